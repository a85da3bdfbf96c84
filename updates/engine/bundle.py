"""Bundle intake, read once from the first byte to the last.

Three forms (docs/protocol.md §3.3): a ``.tar``/``.tar.gz`` holding one manifest YAML (optionally a
topology) and ``.mender`` files; a manifest artifact (payload type ``mender-orchestrator-manifest``);
a lone manifest YAML. The form is sniffed from the bytes, not taken from the file name.

Nothing is extracted. ``.mender`` members stream into the content-addressed store through
`store_artifact`, which hashes, verifies (checksums, signature) and writes them in the same pass;
YAML members are read into memory under a cap. The upload's own sha256 is computed on the side.
Hostile archives: unsafe names, links, devices, duplicates and unexpected members are reported and
skipped (so one run lists them all); oversize members, too many members and decompression bombs
stop the intake at once, because skipping them would mean decompressing them.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from updates.engine import yamlpos
from updates.engine.artifact import (
    ArtifactError,
    ArtifactInfo,
    ArtifactReader,
    FormatError,
    LimitError,
    Limits,
    PayloadStream,
    PublicKey,
    TruncatedError,
)
from updates.engine.artifact.ranges import Window, file_window, is_regular_file
from updates.engine.artifact.tarcaps import capped_tarinfo
from updates.engine.delta import INDEX as DELTA_INDEX
from updates.engine.delta import MAX_INDEX, DeltaEntry, DeltaError, Rebuilt, Reconstruction, parse_index
from updates.engine.errors import InvalidInput
from updates.engine.store import SHA_RE, ArtifactStore, BackgroundHash, NoSpaceError, StoredObject, StoreError
from updates.engine.streaming import Recording
from updates.engine.transfer import CountingReader, transfer_report

CHUNK = 64 << 10
MANIFEST_PAYLOAD_TYPE = "mender-orchestrator-manifest"
YAML_SUFFIXES = (".yaml", ".yml")
MANIFEST_KINDS = ("manifest", "update_manifest")
_SNIFF = 512
# A lone manifest keeps its own file name in the bundle (and in every problem about it).
_SAFE_YAML_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.ya?ml")
_MAX_TRAILING = 1 << 20  # tar end-of-archive padding is at most one 10 KiB record; gzip adds bytes


@dataclass(frozen=True)
class BundleLimits:
    max_members: int = 4096
    max_member_bytes: int = 64 << 30
    max_total_bytes: int = 256 << 30  # decompressed, all members together
    max_yaml_bytes: int = yamlpos.MAX_BYTES
    max_name_chars: int = 256
    # PAX extended headers are read into memory whole: capped before they are read.
    max_extended_header_bytes: int = 64 << 10
    # Legitimate firmware rarely compresses beyond ~100:1; gzip's own ceiling is ~1032:1.
    max_ratio: int = 200
    ratio_floor: int = 64 << 20  # small archives may compress well without being bombs
    artifact: Limits = field(default_factory=Limits)


class BundleError(InvalidInput):
    """The intake had to stop (corrupt archive, bomb, no space); names the member and reason."""

    def __init__(self, reason: str, member: str | None = None) -> None:
        self.reason = reason
        self.member = member
        super().__init__(f"{member}: {reason}" if member else reason)


@dataclass(frozen=True)
class StoredArtifact:
    member: str  # path inside the bundle ("" when the artifact is the upload itself)
    stored: StoredObject  # for an artifact that came as a delta: the delta (docs/bytes.md)
    info: ArtifactInfo
    rebuilt: Rebuilt | None = None


@dataclass
class Intake:
    form: str
    sha256: str = ""
    size: int = 0
    manifest: bytes | None = None
    manifest_member: str = "manifest.yaml"
    name: str = "the upload"
    topology: bytes | None = None
    topology_member: str | None = None
    artifacts: list[StoredArtifact] = field(default_factory=list)
    manifest_artifact: StoredArtifact | None = None
    problems: list[str] = field(default_factory=list)

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(f"{where}: {reason}")

    def new_objects(self) -> list[StoredObject]:
        """What this intake added to the store (to take back if the bundle is rejected)."""
        stored = [a.stored for a in self.artifacts]
        if self.manifest_artifact is not None:
            stored.append(self.manifest_artifact.stored)
        return [s for s in stored if s.new]


# -- which system a manifest artifact is for -------------------------------------------------------


def read_device_type(path: Path) -> tuple[str | None, str]:
    """The device type from Mender's `device_type` file (`device_type=gateway`), and where it
    came from (or why there is none), for the bundle checks."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(4096).decode("utf-8", "replace")
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "device_type" and value.strip():
            return value.strip(), str(path)
    return None, f"{path}: no device_type= line"


class _Counting:
    """The upload: every byte read is counted and hashed (the bundle's sha256)."""

    def __init__(self, raw: IO[bytes], hasher: BackgroundHash) -> None:
        self.raw = raw
        self.hasher = hasher
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.size += len(data)
            self.hasher.update(data)
        return data


class _Prefixed:
    """The sniffed head, then the rest of the stream."""

    def __init__(self, head: bytes, rest: _Counting) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(n)
        take = len(self.head) if n is None or n < 0 else n
        data, self.head = self.head[:take], self.head[take:]
        return data


class _Inflating:
    """gunzip with caps: total output, and output per input byte (decompression bombs)."""

    def __init__(self, source: _Prefixed, counter: _Counting, limits: BundleLimits) -> None:
        self.gz: gzip.GzipFile = gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[call-overload]
        self.counter = counter
        self.limits = limits
        self.out = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self.gz.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            raise BundleError(f"corrupt gzip stream ({exc})")
        self.out += len(data)
        self._check()
        return data

    def _check(self) -> None:
        if self.out > self.limits.max_total_bytes:
            raise BundleError(f"decompressed size exceeds the cap of {self.limits.max_total_bytes} bytes")
        ratio = self.out / max(self.counter.size, 1)
        if self.out > self.limits.ratio_floor and ratio > self.limits.max_ratio:
            raise BundleError(
                f"decompression ratio above {self.limits.max_ratio}:1 after {self.out} bytes "
                "(decompression bomb?)"
            )


class _Tee:
    """Everything the artifact reader reads also goes into the store writer."""

    def __init__(self, source: IO[bytes] | _Prefixed | Window, sink: Callable[[bytes], None]) -> None:
        self.source = source
        self.sink = sink

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        if data:
            self.sink(data)
        return data

    def drain(self, label: str, limit: int | None) -> None:
        """Take in the bytes after the tar's end (padding), so the stored file is the whole file."""
        extra = 0
        while data := self.read(CHUNK):
            extra += len(data)
            if limit is not None and extra > limit:
                raise FormatError(f"more than {limit} bytes of trailing data after the artifact", label)


def _read_exactly(source: _Counting, size: int) -> bytes:
    parts, have = [], 0
    while have < size and (data := source.read(size - have)):
        parts.append(data)
        have += len(data)
    return b"".join(parts)


# -- one artifact ----------------------------------------------------------------------------------


def store_artifact(
    source: IO[bytes] | _Prefixed | Window,
    store: ArtifactStore,
    *,
    keys: Sequence[PublicKey],
    limits: Limits,
    label: str,
    expected_size: int | None = None,
    on_payload: Callable[[PayloadStream], None] | None = None,
    accept: Callable[[ArtifactInfo], None] | None = None,
) -> tuple[StoredObject, ArtifactInfo]:
    """Verify one `.mender` stream while writing it into the store, in a single pass.

    `accept` may raise to refuse a verified artifact before it gets its store name. Raises
    ArtifactError (invalid, unsigned, bad checksum) or StoreError; the store is unchanged then.
    """
    if isinstance(source, Window):
        return _store_window(source, store, keys=keys, limits=limits, label=label, accept=accept)
    with store.writer(label, expected_size=expected_size) as out:
        tee = _Tee(source, out.write)
        reader = ArtifactReader(tee, keys=keys, limits=limits)  # type: ignore[arg-type]  # duck-typed
        reader.read_header()
        for payload in reader.payloads():
            if on_payload is not None:
                on_payload(payload)
        info = reader.finish()
        tee.drain(label, None if expected_size is not None else _MAX_TRAILING)
        if expected_size is not None and out.size != expected_size:
            raise FormatError(f"{out.size} bytes, but {expected_size} were announced", label)
        if accept is not None:
            accept(info)
        return out.commit(), info


def _store_window(
    member: Window,
    store: ArtifactStore,
    *,
    keys: Sequence[PublicKey],
    limits: Limits,
    label: str,
    accept: Callable[[ArtifactInfo], None] | None,
) -> tuple[StoredObject, ArtifactInfo]:
    """`store_artifact` for a member of a file on disk: every byte of it is read once, into the
    reader's buffer, and hashed for the store and written by the writer's lanes meanwhile."""
    with store.writer(label, expected_size=member.size) as out:
        body = Window(member, 0, member.size, lanes=out.lanes())
        try:
            reader = ArtifactReader(body, keys=keys, limits=limits)
            reader.read_header()
            for _ in reader.payloads():
                pass
            info = reader.finish()
            body.seek(body.size)  # the tar's end padding: part of the stored file
            body.fan.wait()
        finally:
            body.close()
        if out.size != member.size:
            raise FormatError(f"{out.size} bytes, but {member.size} were announced", label)
        if accept is not None:
            accept(info)
        return out.commit(), info


# -- the three forms -------------------------------------------------------------------------------


def sniff(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if (len(head) >= 262 and head[257:262] == b"ustar") or _looks_like_v7_tar(head):
        # A .mender file is a tar whose first member is `version` (docs/protocol.md §7.1).
        return "manifest-artifact" if head[:8] == b"version\0" else "tar"
    return "manifest" if _looks_like_text(head) else "unknown"


def _looks_like_text(head: bytes) -> bool:
    """A YAML manifest is UTF-8 text: no NUL, and it decodes (the head may cut a character)."""
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _looks_like_v7_tar(head: bytes) -> bool:
    # Pre-POSIX tars lack the magic; their header checksum still identifies them.
    if len(head) < _SNIFF:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def ingest(
    source: IO[bytes],
    store: ArtifactStore,
    *,
    keys: Sequence[PublicKey] = (),
    limits: BundleLimits = BundleLimits(),
    name: str = "",
) -> Intake:
    """Read a whole upload; every problem found ends up in `Intake.problems` (none: accepted).
    `name` is the upload's file name, to name it in problems (and a lone manifest by it)."""
    raw = source.fh if isinstance(source, CountingReader) else source
    if is_regular_file(raw) and sniff(os.pread(raw.fileno(), _SNIFF, raw.tell())) == "tar":
        return _ingest_tar_file(raw, source, store, keys=keys, limits=limits, name=name)
    hasher = BackgroundHash()
    counter = _Counting(source, hasher)
    head = _read_exactly(counter, _SNIFF)
    intake = Intake(form=sniff(head), name=name or "the upload")
    if intake.form == "manifest" and _SAFE_YAML_NAME.fullmatch(name):
        intake.manifest_member = name
    stream = _Prefixed(head, counter)
    try:
        _FORMS[intake.form](_Context(stream, counter, store, keys, limits, intake))
    except BundleError as exc:
        intake.problems.append(f"{exc} (intake stopped here)")
    except NoSpaceError as exc:
        intake.problems.append(f"{exc} (intake stopped here)")
    finally:
        intake.sha256 = hasher.hexdigest()
        intake.size = counter.size
    return intake


def _ingest_tar_file(
    raw: IO[bytes],
    source: IO[bytes],
    store: ArtifactStore,
    *,
    keys: Sequence[PublicKey],
    limits: BundleLimits,
    name: str,
) -> Intake:
    """`ingest` of a .tar on disk: read with pread into reused buffers, each byte once; the
    upload's digest is a lane of the file's window (docs/performance.md, "Bytes")."""
    start = raw.tell()
    digest = hashlib.sha256()
    progress = None
    if isinstance(source, CountingReader):
        counting = source
        progress = lambda pos: transfer_report(counting.label, pos, counting.total)  # noqa: E731
    window = file_window(raw.fileno(), start, lanes=[digest.update], progress=progress)
    intake = Intake(form="tar", name=name or "the upload")
    try:
        _read_tar(_Context(None, None, store, keys, limits, intake), window)
    except BundleError as exc:
        intake.problems.append(f"{exc} (intake stopped here)")
    except NoSpaceError as exc:
        intake.problems.append(f"{exc} (intake stopped here)")
    finally:
        with contextlib.suppress(EOFError, OSError):
            window.seek(max(window.size, window.tell()))  # the digest and size cover the whole file
        window.close()
        intake.sha256 = digest.hexdigest()
        intake.size = window.size
    return intake


@dataclass(frozen=True)
class _Context:
    stream: _Prefixed | None  # None: a .tar on disk, read through windows (only `_read_tar`)
    counter: _Counting | None

    def upload(self) -> tuple[_Prefixed, _Counting]:
        assert self.stream is not None and self.counter is not None
        return self.stream, self.counter

    store: ArtifactStore
    keys: Sequence[PublicKey]
    limits: BundleLimits
    intake: Intake
    deltas: dict[str, DeltaEntry] = field(default_factory=dict)  # by the delta's member


def _lone_manifest(ctx: _Context) -> None:
    cap = ctx.limits.max_yaml_bytes
    data = _read_capped(ctx.upload()[0], cap)
    if len(data) > cap:
        ctx.intake.problem("manifest", f"larger than {cap} bytes")
        return
    ctx.intake.manifest = data


def _unknown(ctx: _Context) -> None:
    head = ctx.upload()[0].read(8)
    ctx.intake.problem(
        ctx.intake.name,
        "not a bundle: neither a tar archive, a gzip file, a .mender artifact nor a YAML manifest "
        f"(it starts with the bytes {head.hex(' ')})",
    )
    _drain(ctx.upload()[0])  # the upload's sha256 and size still cover all of it


def _drain(source: _Prefixed) -> None:
    while source.read(CHUNK):
        pass


def _read_capped(source: _Prefixed | IO[bytes], cap: int) -> bytes:
    parts, have = [], 0
    while have <= cap and (data := source.read(min(CHUNK, cap + 1 - have))):
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def _manifest_artifact(ctx: _Context) -> None:
    kept: list[tuple[str, bytes]] = []

    def keep(payload: PayloadStream) -> None:
        kept.append((payload.name, _read_capped(payload, ctx.limits.max_yaml_bytes)))  # type: ignore[arg-type]

    try:
        stored, info = store_artifact(
            ctx.upload()[0],
            ctx.store,
            keys=ctx.keys,
            limits=ctx.limits.artifact,
            label="artifact",
            on_payload=keep,
        )
    except TruncatedError as exc:
        ctx.intake.problem("manifest artifact", f"the file is truncated, upload it whole: {exc}")
        return
    except (ArtifactError, StoreError) as exc:
        ctx.intake.problem("manifest artifact", str(exc))
        return
    ctx.intake.manifest_artifact = StoredArtifact("", stored, info)
    _take_manifest_payload(ctx.intake, info, kept, ctx.limits.max_yaml_bytes)


def _take_manifest_payload(
    intake: Intake, info: ArtifactInfo, kept: list[tuple[str, bytes]], cap: int
) -> None:
    if info.payload_type != MANIFEST_PAYLOAD_TYPE:
        # A component's own artifact: it names no other component and no order, so it is never a
        # deployment by itself (docs/protocol.md §4: bundles).
        intake.problem(
            "manifest artifact",
            f"{info.name} is a single-component artifact (payload type {info.payload_type!r}), "
            f"not a manifest artifact ({MANIFEST_PAYLOAD_TYPE!r}): upload it in a bundle, a .tar or "
            ".tar.gz with a manifest that names it",
        )
        return
    if len(kept) != 1 or not kept[0][0].endswith(YAML_SUFFIXES):
        names = [name for name, _ in kept]
        intake.problem("manifest artifact", f"must carry exactly one .yaml/.yml file, carries {names}")
        return
    name, data = kept[0]
    if len(data) > cap:
        intake.problem(f"manifest artifact: {name}", f"larger than {cap} bytes")
        return
    intake.manifest, intake.manifest_member = data, name


def _tar(ctx: _Context) -> None:
    _read_tar(ctx, ctx.upload()[0])


def _tar_gz(ctx: _Context) -> None:
    _read_tar(ctx, _Inflating(*ctx.upload(), ctx.limits))


_FORMS: dict[str, Callable[[_Context], None]] = {
    "manifest": _lone_manifest,
    "manifest-artifact": _manifest_artifact,
    "tar": _tar,
    "tar.gz": _tar_gz,
    "unknown": _unknown,
}


# -- tar bundles -----------------------------------------------------------------------------------


def _read_tar(ctx: _Context, source: _Prefixed | _Inflating | Window) -> None:
    try:
        if isinstance(source, Window):  # headers only: members are read through their windows
            tar = tarfile.open(fileobj=source, mode="r:", tarinfo=_tarinfo(ctx.limits))  # type: ignore[call-overload]  # noqa: SIM115
        else:
            tar = tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK, tarinfo=_tarinfo(ctx.limits))  # type: ignore[call-overload]  # noqa: SIM115
    except tarfile.TarError as exc:
        raise BundleError(f"not a readable tar archive ({exc})")
    except LimitError as exc:
        raise BundleError(exc.reason, "the first member")
    gate = _Gate(ctx.limits, ctx.intake)
    for info in _Members(tar):
        name = gate.admit(info)
        if name is not None:
            try:
                _member(ctx, tar, info, name, source if isinstance(source, Window) else None)
            except (EOFError, tarfile.ReadError) as exc:  # a member cut short of its header's size
                raise BundleError(f"corrupt tar archive ({exc})", name)
    if ctx.intake.manifest is None:
        ctx.intake.problem(
            "bundle", "holds no manifest (a YAML file with kind: manifest or kind: update_manifest)"
        )
    _drain_trailing(source)


class _Members:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.last = ""

    def __iter__(self) -> _Members:
        return self

    def __next__(self) -> tarfile.TarInfo:
        try:
            info = self.tar.next()
        except (tarfile.TarError, EOFError, ValueError, OverflowError) as exc:
            raise BundleError(f"corrupt tar archive ({exc})")
        except LimitError as exc:
            raise BundleError(
                exc.reason, f"the member after {self.last!r}" if self.last else "the first member"
            )
        if info is None:
            raise StopIteration
        self.last = info.name[:100]
        return info


def _tarinfo(limits: BundleLimits) -> type[tarfile.TarInfo]:
    # A name is at most max_name_chars characters of up to 4 UTF-8 bytes each.
    return capped_tarinfo(limits.max_name_chars * 4, limits.max_extended_header_bytes)


def _drain_trailing(source: _Prefixed | _Inflating | Window) -> None:
    extra = 0
    while data := source.read(CHUNK):
        extra += len(data)
        if extra > _MAX_TRAILING:
            raise BundleError(f"more than {_MAX_TRAILING} bytes of data after the end of the archive")


class _Gate:
    """Member-by-member admission: names, types, duplicates, sizes."""

    def __init__(self, limits: BundleLimits, intake: Intake) -> None:
        self.limits = limits
        self.intake = intake
        self.seen: set[str] = set()
        self.count = 0
        self.total = 0

    def admit(self, info: tarfile.TarInfo) -> str | None:
        """The member's bundle path, or None when it is skipped (the reason is recorded)."""
        self._count(info)
        name = info.name[2:] if info.name.startswith("./") else info.name
        reason = _unsafe_name(name, self.limits.max_name_chars) or _bad_type(info)
        if reason is None and name.rstrip("/") in self.seen:
            reason = "duplicate member name"
        self.seen.add(name.rstrip("/"))
        if reason is not None:
            self.intake.problem(info.name or "(empty name)", reason)
            return None
        return None if info.isdir() else name

    def _count(self, info: tarfile.TarInfo) -> None:
        self.count += 1
        if self.count > self.limits.max_members:
            raise BundleError(f"more than {self.limits.max_members} members")
        if info.size > self.limits.max_member_bytes:
            raise BundleError(
                f"{info.size} bytes exceed the member cap of {self.limits.max_member_bytes}", info.name
            )
        self.total += info.size
        if self.total > self.limits.max_total_bytes:
            raise BundleError(
                f"members exceed the total cap of {self.limits.max_total_bytes} bytes", info.name
            )


def _unsafe_name(name: str, max_chars: int) -> str | None:
    parts = name.rstrip("/").split("/")
    if not name or name.startswith("/") or ".." in parts:
        return "outside the bundle root"
    if "\\" in name or any(ord(c) < 32 for c in name) or "" in parts or "." in parts:
        return "unsafe member name"
    if len(name) > max_chars:
        return f"name longer than {max_chars} characters"
    return None


def _bad_type(info: tarfile.TarInfo) -> str | None:
    if info.issym() or info.islnk():
        return f"links are not allowed (-> {info.linkname!r})"
    if info.ischr() or info.isblk() or info.isfifo():
        return "device files and FIFOs are not allowed"
    if info.issparse():
        return "sparse files are not allowed"
    if not (info.isreg() or info.isdir()):
        return f"tar member type {info.type!r} is not allowed"
    return None


def _member(
    ctx: _Context, tar: tarfile.TarFile, info: tarfile.TarInfo, name: str, window: Window | None
) -> None:
    # A window reads forward from the member's first byte, with no buffer of tarfile's between.
    fileobj: IO[bytes] | Window | None = (
        tar.extractfile(info) if window is None else Window(window, info.offset_data, info.size)
    )
    assert fileobj is not None  # regular file
    if name == DELTA_INDEX and ctx.intake.artifacts == [] and not ctx.deltas:
        _delta_index(ctx, fileobj, info)
    elif name in ctx.deltas:
        _delta_member(ctx, fileobj, info, name)
    elif name.endswith(".mender"):
        _artifact_member(ctx, fileobj, info, name)
    elif name.endswith(YAML_SUFFIXES):
        _yaml_member(ctx, fileobj, info, name)
    else:
        ctx.intake.problem(name, "unexpected member: a bundle holds manifest/topology YAML and .mender files")


def _artifact_member(ctx: _Context, fileobj: IO[bytes] | Window, info: tarfile.TarInfo, name: str) -> None:
    try:
        stored, artifact = store_artifact(
            fileobj, ctx.store, keys=ctx.keys, limits=ctx.limits.artifact, label=name, expected_size=info.size
        )
    except NoSpaceError:
        raise
    except (ArtifactError, StoreError) as exc:
        # The member's rest is skipped by the next tar.next(); its bytes never get a store name.
        ctx.intake.problem(name, str(exc).removeprefix(f"{name}: "))
        return
    ctx.intake.artifacts.append(StoredArtifact(name, stored, artifact))


def _delta_index(ctx: _Context, fileobj: IO[bytes] | Window, info: tarfile.TarInfo) -> None:
    if info.size > MAX_INDEX:
        ctx.intake.problem(DELTA_INDEX, f"larger than {MAX_INDEX} bytes")
        return
    try:
        entries = parse_index(fileobj.read())
    except DeltaError as exc:
        ctx.intake.problem(DELTA_INDEX, str(exc).removeprefix(f"{DELTA_INDEX}: "))
        return
    ctx.deltas.update({e.delta: e for e in entries})


def _delta_member(ctx: _Context, fileobj: IO[bytes] | Window, info: tarfile.TarInfo, name: str) -> None:
    """A delta is stored as it is; the artifact it rebuilds against its stored base is verified
    like any artifact (size, sha256, signature, payloads) as it streams past, and not kept."""
    entry = ctx.deltas[name]
    if not (SHA_RE.fullmatch(entry.base_sha256) and ctx.store.has(entry.base_sha256)):
        ctx.intake.problem(
            entry.member, f"missing base artifact {entry.base_name} (sha256 {entry.base_sha256})"
        )
        return
    try:
        with ctx.store.writer(name, expected_size=info.size) as out:
            tee = _Tee(fileobj, out.write)
            rebuilt = Reconstruction(ctx.store.path(entry.base_sha256), cast(IO[bytes], tee), entry)
            head = Recording(cast(IO[bytes], rebuilt))  # duck-typed streams
            reader = ArtifactReader(cast(IO[bytes], head), keys=ctx.keys, limits=ctx.limits.artifact)
            reader.read_header()
            head.recording = False
            for _ in reader.payloads():
                pass
            artifact = reader.finish()
            while rebuilt.read(CHUNK):  # the tar's end padding, then the size and sha256 check
                pass
            tee.drain(name, None)
            if out.size != info.size:
                raise FormatError(f"{out.size} bytes, but {info.size} were announced", name)
            stored = out.commit()
    except NoSpaceError:
        raise
    except (ArtifactError, StoreError, DeltaError) as exc:
        ctx.intake.problem(entry.member, str(exc).removeprefix(f"{entry.member}: "))
        return
    ctx.intake.artifacts.append(
        StoredArtifact(entry.member, stored, artifact, Rebuilt(entry, bytes(head.seen)))
    )


def _yaml_member(ctx: _Context, fileobj: IO[bytes] | Window, info: tarfile.TarInfo, name: str) -> None:
    cap = ctx.limits.max_yaml_bytes
    if info.size > cap:
        ctx.intake.problem(name, f"YAML larger than {cap} bytes")
        return
    data = fileobj.read()
    kind = _yaml_kind(data)
    if kind in MANIFEST_KINDS:
        _take(ctx.intake, "manifest", name, data)
    elif kind == "topology":
        _take(ctx.intake, "topology", name, data)
    else:
        ctx.intake.problem(name, f"neither a manifest nor a topology ({kind})")


def _yaml_kind(data: bytes) -> str:
    try:
        root = yamlpos.load(data)
    except yamlpos.YamlError as exc:
        return f"invalid YAML: {exc}".replace("\n", "; ")
    kind = root.mapping.get("kind") if root.mapping else None
    return str(kind.value) if kind is not None else "no 'kind' key"


def _take(intake: Intake, what: str, name: str, data: bytes) -> None:
    current = intake.manifest_member if what == "manifest" and intake.manifest is not None else None
    if what == "topology" and intake.topology is not None:
        current = intake.topology_member
    if current is not None:
        intake.problem(name, f"a second {what} (the first is {current}); a bundle holds one")
        return
    if what == "manifest":
        intake.manifest, intake.manifest_member = data, name
    else:
        intake.topology, intake.topology_member = data, name
