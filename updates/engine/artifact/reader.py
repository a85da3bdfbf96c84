"""Streaming, forward-only reader and verifier of Mender Artifacts (format v3).

Works on pipes and HTTP bodies: both the outer tar and the data tar are read with tarfile's
stream mode, payload bytes are hashed as they pass, and nothing bigger than the header is held
in memory. Trust order (docs/protocol.md §7.8): signature over the raw manifest bytes first, then every
other byte against the manifest.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import lzma
import os
import queue
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard

from updates.engine.fsutil import fsync_dir

from .errors import (
    ChecksumError,
    FormatError,
    LimitError,
    PayloadMismatchError,
    SignatureError,
    TruncatedError,
    UnsafeMemberError,
)
from .headers import (
    DATA_PREFIX,
    HEADER_INFO,
    META_DATA,
    TYPE_INFO,
    HeaderInfo,
    Manifest,
    TypeInfo,
    check_payload_files,
    parse_header_info,
    parse_manifest,
    parse_meta_data,
    parse_type_info,
    parse_version,
)
from .limits import Limits
from .model import ArtifactInfo, PayloadFile
from .names import (
    AUGMENT_NAMES,
    DATA_RE,
    HEADER_RE,
    check_payload_name,
    check_script_name,
    check_unsafe,
    compression_of,
)
from .ranges import Window, file_window, is_regular_file, start_writeback
from .signing import SIG_MEMBER, PublicKey, key_fingerprint, verify_manifest
from .tarcaps import capped_tarinfo

# 64 KiB rather than 1 MiB: buffers this size are recycled by the allocator, while 1 MiB ones are
# fresh mmaps whose page faults made extraction ~3x slower (measured with bench/artifact_throughput.py).
CHUNK = 64 << 10
# Buffers circulating between extraction's reading and writing threads (`_copy_overlapped`);
# 256 KiB measured best: fewer hand-overs between the threads than 64 KiB, and (unlike 1 MiB)
# the reads tarfile makes for them still reuse the allocator's memory.
_BUFFERS = 4
_EXTRACT_CHUNK = 256 << 10
# From a file on disk (`Window`) nothing allocates per read: large reused buffers, fewer
# hand-overs, and one preadv per MiB.
_DIRECT_CHUNK = 1 << 20
# Extraction asks the kernel to start writing back every this many bytes (ranges.start_writeback).
_WRITEBACK_EVERY = 8 << 20
_SCRIPTS = "scripts/"
NOT_AN_ARTIFACT = "not a Mender artifact: expected a tar archive whose first member is 'version'"


@contextlib.contextmanager
def tar_errors(member: str) -> Iterator[None]:
    """Turn what tarfile/gzip/lzma raise on hostile or cut input into our error families."""
    try:
        yield
    except (EOFError, tarfile.ReadError) as exc:
        if isinstance(exc, EOFError) or "unexpected end" in str(exc) or "truncated" in str(exc):
            raise TruncatedError(f"stream ended early ({exc})", member)
        raise FormatError(f"corrupt tar: {exc}", member)
    except (tarfile.TarError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, zstandard.ZstdError) as exc:
        raise FormatError(f"corrupt data: {exc}", member)
    except (ValueError, OverflowError) as exc:  # tarfile lets these escape from malformed PAX/GNU headers
        raise FormatError(f"corrupt tar header: {exc}", member)
    except LimitError as exc:
        if exc.member is not None:
            raise
        raise LimitError(exc.reason, member) from None  # from the tar-header caps, which know no member


def _kind(info: tarfile.TarInfo) -> str:
    for test, label in ((info.issym, "symlink"), (info.islnk, "hard link"), (info.isdir, "directory")):
        if test():
            return label
    return "sparse file" if info.issparse() else f"tar type {info.type!r}"


def check_regular(info: tarfile.TarInfo, label: str) -> None:
    if not info.isreg() or info.issparse():
        raise UnsafeMemberError(f"not a regular file ({_kind(info)})", label)


def decompressor(raw: IO[bytes], kind: str) -> IO[bytes]:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]  # GzipFile is a binary IO
    if kind == "xz":
        return lzma.LZMAFile(raw)
    if kind == "zstd":
        # Streaming like the others: memory stays bounded by the window, whatever the frame says.
        # One decompressor per stream: they are not thread-safe, and Downloads run in parallel.
        # The window cap (128 MiB, zstd's own default limit) bounds what a hostile frame header
        # can make the decoder reserve.
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << 27)
        reader = decompressor.stream_reader(raw, read_size=CHUNK, read_across_frames=True, closefd=False)
        return reader  # a binary, readable stream
    return raw


def read_capped(fileobj: IO[bytes], cap: int, label: str, what: str) -> bytes:
    parts, have = [], 0
    with tar_errors(label):
        # Some decompressors return short reads before the end: read until cap+1 or EOF.
        while have <= cap and (chunk := fileobj.read(cap + 1 - have)):
            parts.append(chunk)
            have += len(chunk)
    data = b"".join(parts)
    if len(data) > cap:
        raise LimitError(f"{what} exceeds the cap of {cap} bytes", label)
    return data


@dataclass
class _HeaderParts:
    header_info: bytes | None = None
    type_info: bytes | None = None
    meta_data: bytes | None = None
    scripts: tuple[str, ...] = ()


def _header_member(parts: _HeaderParts, name: str, data: bytes, label: str) -> None:
    """Accept inner header members only in the order the device client's lexer does."""
    if name == HEADER_INFO and parts.header_info is None:
        parts.header_info = data
    elif name.startswith(_SCRIPTS) and parts.header_info is not None and parts.type_info is None:
        check_script_name(name[len(_SCRIPTS) :], label)
        if name[len(_SCRIPTS) :] in parts.scripts:
            raise UnsafeMemberError("duplicate state script", label)
        parts.scripts += (name[len(_SCRIPTS) :],)
    elif name == TYPE_INFO and parts.header_info is not None and parts.type_info is None:
        parts.type_info = data
    elif name == META_DATA and parts.type_info is not None and parts.meta_data is None:
        parts.meta_data = data
    else:
        raise FormatError("unexpected or out-of-order header member", label)


def parse_header_tar(tar_bytes: bytes, outer: str, limits: Limits) -> _HeaderParts:
    parts = _HeaderParts()
    with tar_errors(outer):
        tar = tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r|", tarinfo=_tarinfo(limits))  # noqa: SIM115 - in-memory
    for count, info in enumerate(_members(tar, outer, limits), 1):
        label = f"{outer}: {info.name}"
        if count > limits.max_header_members:
            raise LimitError(f"more than {limits.max_header_members} members", outer)
        check_unsafe(info.name, label)
        check_regular(info, label)
        _header_member(parts, info.name, _read_member(tar, info, label), label)
    if parts.header_info is None or parts.type_info is None:
        raise FormatError("header-info or headers/0000/type-info missing", outer)
    return parts


def _members(tar: tarfile.TarFile, label: str, limits: Limits) -> Iterator[tarfile.TarInfo]:
    while True:
        with tar_errors(label):
            info = tar.next()
        if info is None:
            return
        check_name_length(info, limits, f"{label}: {info.name[:100]}")
        yield info


def _tarinfo(limits: Limits) -> type[tarfile.TarInfo]:
    return capped_tarinfo(limits.max_name_bytes, limits.max_header_bytes)


def check_name_length(info: tarfile.TarInfo, limits: Limits, label: str) -> None:
    # A PAX `path` record within the extended-header cap can still be far longer than any name.
    if len(info.name.encode("utf-8", "surrogateescape")) > limits.max_name_bytes:
        raise LimitError(f"member name longer than {limits.max_name_bytes} bytes", label)


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, label: str) -> bytes:
    with tar_errors(label):
        fileobj = tar.extractfile(info)
        data = fileobj.read() if fileobj else b""
    if len(data) != info.size:
        raise TruncatedError("member shorter than its tar header says", label)
    return data


def _decompress_header(raw: bytes, kind: str, label: str, limits: Limits) -> bytes:
    # Reading cap+1 bytes through the decompressor bounds the work a bomb can cause.
    stream = decompressor(io.BytesIO(raw), kind)
    return read_capped(stream, limits.max_header_bytes, label, "decompressed header")


class PayloadStream:
    """One payload file as it streams out of the data tar, hashed as it is read."""

    def __init__(
        self, name: str, size: int, expected_sha256: str, source: IO[bytes] | Window, label: str
    ) -> None:
        self.name = name
        self.size = size
        self.expected_sha256 = expected_sha256
        self._source = source
        self._label = label
        self._hash = hashlib.sha256()
        self._remaining = size
        self.verified = False
        # Read straight from a file (ranges.Window): large reads cost no allocation there.
        self.chunk = _DIRECT_CHUNK if isinstance(source, Window) else CHUNK

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._remaining == 0:
            self._verify()
            return b""
        want = self._remaining if n is None or n < 0 else min(n, self._remaining)
        with tar_errors(self._label):
            data = self._source.read(want)
        if not data:
            raise TruncatedError("payload file ended before its declared size", self._label)
        self._hash.update(data)
        self._remaining -= len(data)
        if self._remaining == 0:
            self._verify()
        return data

    def readinto(self, buffer: bytearray) -> int:
        """Like `read(len(buffer))` into a buffer the caller reuses: no new object per chunk."""
        if self._remaining == 0:
            self._verify()
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._remaining)]
        with tar_errors(self._label):
            count = self._source.readinto(view)  # type: ignore[union-attr]  # tarfile's ExFileObject or a Window
        if not count:
            raise TruncatedError("payload file ended before its declared size", self._label)
        self._hash.update(view[:count])
        self._remaining -= count
        if self._remaining == 0:
            self._verify()
        return int(count)

    def drain(self) -> None:
        if self._remaining == 0:
            self._verify()
            return
        buffer = bytearray(min(self.chunk, self._remaining))
        while self.readinto(buffer):
            pass
        self._verify()

    def _verify(self) -> None:
        if self._hash.hexdigest() != self.expected_sha256:
            raise ChecksumError("checksum mismatch", self._label)
        self.verified = True


class ArtifactReader:
    """Streaming, forward-only reader (works on pipes/HTTP bodies: tarfile mode 'r|').

    Given a `ranges.Window` (a file on disk, `read_artifact`, a bundle's member at ingest),
    tarfile reads only the headers and the small members, and an uncompressed data tar's payload
    bytes are read straight from the file into the caller's buffer: the same checks, in the
    same order, without tarfile's copies through two stream layers."""

    def __init__(
        self,
        fileobj: BinaryIO | IO[bytes] | Window,
        *,
        keys: Sequence[PublicKey] = (),
        limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, safe as a default
        require_signature: bool | None = None,
    ) -> None:
        self._fileobj = fileobj
        self._window = fileobj if isinstance(fileobj, Window) else None
        self._keys = tuple(keys)
        self._limits = limits
        self._require = bool(self._keys) if require_signature is None else require_signature
        self._tar: tarfile.TarFile | None = None
        self._last = "artifact"
        self._info: ArtifactInfo | None = None
        self._manifest = Manifest(b"")
        self._iter: Iterator[PayloadStream] | None = None
        self._sizes: dict[str, int] = {}
        self._verified: set[str] = set()
        self._total = 0

    # -- outer tar -------------------------------------------------------------------------

    def _next(self) -> tarfile.TarInfo | None:
        if self._tar is None:
            self._tar = self._open_outer()
            with tar_errors("version"):
                info = self._tar.next()  # the member read by open()
        else:
            with tar_errors(f"the tar header after {self._last!r}"):
                info = self._tar.next()
        if info is not None:
            check_name_length(info, self._limits, info.name[:100])
            check_unsafe(info.name, info.name)
            check_regular(info, info.name)
            self._last = info.name
        return info

    def _open_outer(self) -> tarfile.TarFile:
        # tarfile reads the first member header here. Garbage fails at this point: say what was
        # expected, not "corrupt tar" somewhere.
        try:
            with tar_errors("version"):
                # The caller owns the file object; the TarFile holds no other resource.
                if self._window is not None:  # headers only; a window reads forward like a stream
                    source = cast(IO[bytes], self._window)  # duck-typed: read, seek and tell
                    return tarfile.open(fileobj=source, mode="r:", tarinfo=_tarinfo(self._limits))
                return tarfile.open(
                    fileobj=cast(IO[bytes], self._fileobj),
                    mode="r|",
                    bufsize=CHUNK,
                    tarinfo=_tarinfo(self._limits),
                )
        except (FormatError, TruncatedError) as exc:
            raise FormatError(f"{NOT_AN_ARTIFACT} ({exc.reason})") from None

    def _read_small(self, info: tarfile.TarInfo, cap: int) -> bytes:
        if info.size > cap:
            raise LimitError(f"{info.size} bytes exceed the cap of {cap}", info.name)
        assert self._tar is not None
        return _read_member(self._tar, info, info.name)

    def _expect(self, name: str, cap: int) -> bytes:
        info = self._next()
        if info is None:
            raise PayloadMismatchError(f"missing (artifact ends after {self._last})", name)
        if info.name != name:
            raise FormatError(f"expected {name!r} here", info.name)
        return self._read_small(info, cap)

    # -- header ----------------------------------------------------------------------------

    def read_header(self) -> ArtifactInfo:
        """Read version, manifest, manifest.sig and header; stop before the data member."""
        if self._info is None:
            version = self._expect("version", self._limits.max_version_bytes)
            manifest_raw = self._expect("manifest", self._limits.max_manifest_bytes)
            info, signer = self._signature(manifest_raw)
            self._manifest = parse_manifest(manifest_raw, self._limits)
            self._check_sha("version", version)
            parse_version(version, self._limits)
            self._info = self._header(info, manifest_raw, signer)
        return self._info

    def _signature(self, manifest_raw: bytes) -> tuple[tarfile.TarInfo | None, tuple[bool, PublicKey | None]]:
        info = self._next()
        if info is None or info.name != SIG_MEMBER:
            if self._require:
                raise SignatureError("artifact is not signed but a signature is required", SIG_MEMBER)
            return info, (False, None)
        sig = self._read_small(info, self._limits.max_signature_bytes)
        signer = verify_manifest(sig, manifest_raw, self._keys) if self._require else None
        return self._next(), (True, signer)

    def _check_sha(self, name: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != self._manifest.sha_of(name, name):
            raise ChecksumError("checksum mismatch with the manifest", name)

    def _header(
        self, info: tarfile.TarInfo | None, manifest_raw: bytes, sig: tuple[bool, PublicKey | None]
    ) -> ArtifactInfo:
        if info is None:
            raise FormatError("artifact ends before the header", "header.tar")
        match = HEADER_RE.fullmatch(info.name)
        if info.name.startswith(AUGMENT_NAMES):
            raise FormatError("augmented artifacts are not supported", info.name)
        if not match:
            raise FormatError("expected header.tar[.gz|.xz] here", info.name)
        kind = compression_of(match.group(1))
        raw = self._read_small(info, self._limits.max_header_bytes)
        self._check_sha(info.name, raw)
        header_tar = _decompress_header(raw, kind, info.name, self._limits)
        parts = parse_header_tar(header_tar, info.name, self._limits)
        return self._build_info(parts, kind, manifest_raw, sig)

    def _build_info(
        self, parts: _HeaderParts, kind: str, manifest_raw: bytes, sig: tuple[bool, PublicKey | None]
    ) -> ArtifactInfo:
        assert parts.header_info is not None and parts.type_info is not None
        header = parse_header_info(parts.header_info, self._limits)
        type_info = parse_type_info(parts.type_info, header.payload_type, self._limits)
        if header.payload_type is None and parts.meta_data is not None:
            raise PayloadMismatchError("empty-payload artifact carries meta-data", META_DATA)
        check_payload_files(self._manifest, header.payload_type)
        files = tuple(PayloadFile(name, 0, sha) for name, sha in self._manifest.data.items())
        return assemble_info(header, type_info, parts, files, kind, manifest_raw, sig, self._limits)

    # -- payload ---------------------------------------------------------------------------

    def payloads(self) -> Iterator[PayloadStream]:
        """Each payload file in turn; an unread rest is drained and verified when advancing."""
        if self._info is None:
            raise RuntimeError("read_header() must be called before payloads()")
        if self._iter is None:
            self._iter = self._iterate()
        return self._iter

    def _iterate(self) -> Iterator[PayloadStream]:
        info = self._next()
        if info is None:
            return
        kind = self._check_data_member(info)
        assert self._tar is not None
        with tar_errors(info.name):
            inner, data = self._open_data(info, kind)
        for member in _members(inner, info.name, self._limits):
            stream = self._open_payload(inner, member, info.name, data)
            yield stream
            stream.drain()
            self._verified.add(stream.name)
        trailing = self._next()
        if trailing is not None:
            raise FormatError("unexpected member after the data member", trailing.name)

    def _check_data_member(self, info: tarfile.TarInfo) -> str:
        match = DATA_RE.fullmatch(info.name)
        if info.name.startswith(AUGMENT_NAMES):
            raise FormatError("augmented artifacts are not supported", info.name)
        if not match:
            raise FormatError("unexpected member (expected data/0000.tar[.gz|.xz])", info.name)
        if match.group(1) != "0000":
            raise FormatError("only one payload (data/0000) is supported", info.name)
        return compression_of(match.group(2))

    def _open_data(self, info: tarfile.TarInfo, kind: str) -> tuple[tarfile.TarFile, Window | None]:
        """The data tar, and the window its payload bytes are read from when it is a file's
        uncompressed range (None: through tarfile's stream mode, decompressed as needed)."""
        assert self._tar is not None
        tarinfo = _tarinfo(self._limits)
        if self._window is None:
            source = decompressor(self._tar.extractfile(info) or io.BytesIO(), kind)
            return tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK, tarinfo=tarinfo), None
        window = Window(self._window, info.offset_data, info.size)
        if kind != "none":
            source = decompressor(cast(IO[bytes], window), kind)  # duck-typed: read() is all it needs
            return tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK, tarinfo=tarinfo), None
        return tarfile.open(fileobj=cast(IO[bytes], window), mode="r:", tarinfo=tarinfo), window

    def _open_payload(
        self, inner: tarfile.TarFile, member: tarfile.TarInfo, outer: str, data: Window | None
    ) -> PayloadStream:
        label = f"{outer}: {member.name}"
        check_payload_name(member.name, label)
        check_regular(member, label)
        if member.name in self._sizes:
            raise UnsafeMemberError("duplicate payload file", label)
        if member.name not in self._manifest.data:
            raise PayloadMismatchError("payload file not listed in the manifest", label)
        self._count_payload(member.size, label)
        self._sizes[member.name] = member.size
        source: IO[bytes] | Window | None
        with tar_errors(label):
            source = (
                inner.extractfile(member) if data is None else Window(data, member.offset_data, member.size)
            )
        assert source is not None
        return PayloadStream(member.name, member.size, self._manifest.data[member.name], source, label)

    def _count_payload(self, size: int, label: str) -> None:
        self._total += size
        if len(self._sizes) >= self._limits.max_payload_files:
            raise LimitError(f"more than {self._limits.max_payload_files} payload files", label)
        if self._total > self._limits.max_payload_bytes:
            raise LimitError(f"payload exceeds the cap of {self._limits.max_payload_bytes} bytes", label)

    def finish(self) -> ArtifactInfo:
        """Drain and verify whatever is left; fail if a manifest data entry was never seen."""
        info = self.read_header()
        for stream in self.payloads():
            stream.drain()
        missing = [name for name in self._manifest.data if name not in self._verified]
        if missing:
            missing_member = DATA_PREFIX + missing[0]
            raise PayloadMismatchError("listed in the manifest but not in the payload", missing_member)
        files = tuple(PayloadFile(f.name, self._sizes[f.name], f.sha256) for f in info.files)
        return replace(info, files=files)


def assemble_info(
    header: HeaderInfo,
    type_info: TypeInfo,
    parts: _HeaderParts,
    files: tuple[PayloadFile, ...],
    kind: str,
    manifest_raw: bytes,
    sig: tuple[bool, PublicKey | None],
    limits: Limits,
) -> ArtifactInfo:
    assert parts.header_info is not None and parts.type_info is not None
    return ArtifactInfo(
        name=header.name,
        group=header.group,
        device_types=header.device_types,
        depends_artifact_name=header.depends_name,
        depends_artifact_group=header.depends_group,
        payload_type=header.payload_type,
        provides=type_info.provides,
        depends=type_info.depends,
        clears_provides=type_info.clears,
        meta_data=parse_meta_data(parts.meta_data, limits),
        scripts=parts.scripts,
        files=files,
        header_compression=kind,
        signed=sig[0],
        signer_fingerprint=None if sig[1] is None else key_fingerprint(sig[1]),
        header_info_raw=parts.header_info,
        type_info_raw=parts.type_info,
        meta_data_raw=parts.meta_data,
        manifest_raw=manifest_raw,
    )


# -- whole-file verification and extraction ---------------------------------------------------


def _extract(stream: PayloadStream, directory: Path, written: list[Path]) -> None:
    """Write to a temp name; link to the final name only once the checksum verified."""
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{stream.name}.", suffix=".part")
    tmp = Path(tmp_name)
    written.append(tmp)
    try:
        _copy_overlapped(stream, fd)
        stream.drain()
        os.fsync(fd)
    finally:
        os.close(fd)
    final = directory / stream.name
    # link+unlink is an atomic rename that refuses to clobber a file this call did not write.
    os.link(tmp, final)
    written.append(final)
    tmp.unlink()


def _copy_overlapped(stream: PayloadStream, fd: int) -> None:
    """Copy `stream` (read and hashed in this thread) to `fd` (written by a second thread):
    hashing and writing both release the GIL, so on two cores they overlap. A few buffers
    circulate between the two, so no chunk is allocated or copied twice."""
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
    size = _DIRECT_CHUNK if stream.chunk == _DIRECT_CHUNK else _EXTRACT_CHUNK
    for _ in range(min(_BUFFERS, max(1, -(-stream.size // size)))):
        free.put(bytearray(min(size, max(stream.size, 1))))
    failed: list[BaseException] = []

    def write() -> None:
        written = synced = 0
        while (item := full.get()) is not None:
            buffer, count = item
            if not failed:
                try:
                    _write_all(fd, memoryview(buffer)[:count])
                    written += count
                    if written - synced >= _WRITEBACK_EVERY:  # the disk works while we hash on
                        start_writeback(fd, synced, written - synced)
                        synced = written
                except BaseException as exc:  # handed to the reading thread, which raises it
                    failed.append(exc)
            free.put(buffer)

    writer = threading.Thread(target=write, name="extract-writer", daemon=True)
    writer.start()
    try:
        while not failed:
            buffer = free.get()
            count = stream.readinto(buffer)
            if not count:
                break
            full.put((buffer, count))
    finally:
        full.put(None)
        writer.join()
    if failed:
        raise failed[0]


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_artifact(
    path: str | os.PathLike[str],
    *,
    keys: Sequence[PublicKey] = (),
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, safe as a default
    extract_to: Path | None = None,
) -> ArtifactInfo:
    """Fully verify `path`; with `extract_to`, leave only verified payload files there."""
    written: list[Path] = []
    directory = None if extract_to is None else Path(extract_to).resolve()
    try:
        with open(path, "rb") as fileobj:
            # A file on disk: read with pread, headers through tarfile, payloads straight.
            source = file_window(fileobj.fileno(), 0) if is_regular_file(fileobj) else fileobj
            reader = ArtifactReader(source, keys=keys, limits=limits)
            reader.read_header()
            for stream in reader.payloads():
                if directory is not None:
                    _extract(stream, directory, written)
            info = reader.finish()
        if directory is not None:
            fsync_dir(directory)
        return info
    except BaseException:
        _remove(written)
        raise
