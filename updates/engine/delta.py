"""Delta bundles: artifacts shipped as binary deltas against artifacts the appliance holds.

The codec is zstd's patch-from mode (the base as a raw-content dictionary, long-distance
matching, a window that covers the artifact), chosen by measurement (docs/bytes.md). A delta
bundle is a bundle tar whose first member is `deltas.json`:

    {"format": 1, "codec": "zstd-patch-from",
     "artifacts": [{"member": "artifacts/rtos-v2.mender", "name": "rtos-v2", "sha256": "…",
                    "size": 123, "base_sha256": "…", "base_name": "rtos-v1",
                    "delta": "deltas/rtos-v2.mender.zstd-patch"}]}

followed by the new bundle's members, each listed artifact replaced by its delta. The manifest is
the new bundle's, unchanged: it still names the full artifacts. Nothing here trusts the delta:
what it reconstructs must hash to the listed sha256 and size.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from updates.engine.artifact import ArtifactError, ArtifactInfo, read_artifact
from updates.engine.errors import InvalidInput

INDEX = "deltas.json"
CODEC = "zstd-patch-from"
FORMAT = 1
LEVEL = 8  # with tables over the whole base: as small as level 19, 5-10x faster (docs/bytes.md)
_CHUNK = 1 << 20
MAX_INDEX = 1 << 20


class DeltaError(InvalidInput):
    """A delta bundle that cannot be made or used; says which artifact and why."""


@dataclass(frozen=True)
class DeltaEntry:
    member: str  # where the full artifact goes in the bundle
    name: str
    sha256: str
    size: int
    base_sha256: str
    base_name: str
    delta: str  # the delta's member

    def to_json(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass(frozen=True)
class Rebuilt:
    """What intake learnt of an artifact that came as a delta: its entry, and the rebuilt
    artifact's head (through its header), which the plan's stream reference keeps."""

    entry: DeltaEntry
    head: bytes = field(repr=False)


# -- the codec --------------------------------------------------------------------------------------


def _window_log(size: int) -> int:
    return max(20, min(31, (max(size, 1) - 1).bit_length()))


def _dictionary(base: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def make_delta(base: Path, new: Path, out: IO[bytes], *, level: int = LEVEL) -> int:
    """Write the delta that turns `base` into `new`; returns its size."""
    base_bytes = base.read_bytes()
    size = new.stat().st_size
    window = _window_log(size + len(base_bytes))
    # Match tables that reach back over the whole base: with the level's defaults, matches
    # further back than ~16 MiB are not found and a 64 MiB delta comes out as large as the file.
    tables = min(window - 1, 30)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=window, hash_log=tables, chain_log=tables, enable_ldm=True, source_size=size
    )
    compressor = zstandard.ZstdCompressor(dict_data=_dictionary(base_bytes), compression_params=params)
    with open(new, "rb") as source:
        _, written = compressor.copy_stream(source, out, size=size, read_size=_CHUNK, write_size=_CHUNK)
    return int(written)


class Reconstruction:
    """The full artifact rebuilt from `base` and a delta stream, read once; at its end its size
    and sha256 must be the listed ones (DeltaError otherwise, before the last bytes are given)."""

    def __init__(self, base: Path, delta: IO[bytes], entry: DeltaEntry) -> None:
        base_bytes = base.read_bytes()
        decompressor = zstandard.ZstdDecompressor(
            dict_data=_dictionary(base_bytes), max_window_size=1 << _window_log(entry.size + len(base_bytes))
        )
        self.reader = decompressor.stream_reader(delta, read_size=_CHUNK, read_across_frames=False)
        self.entry = entry
        self.hash = hashlib.sha256()
        self.done = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.reader.read(n if n and n > 0 else _CHUNK)
        except zstandard.ZstdError as exc:
            raise DeltaError(
                f"{self.entry.member}: the delta does not decode against its base ({exc})"
            ) from None
        self.done += len(data)
        self.hash.update(data)
        if self.done > self.entry.size:
            raise DeltaError(f"{self.entry.member}: reconstructs to more than its {self.entry.size} bytes")
        if not data or self.done == self.entry.size:
            self._check()
        return data

    def _check(self) -> None:
        if self.done != self.entry.size or self.hash.hexdigest() != self.entry.sha256:
            raise DeltaError(
                f"{self.entry.member}: the delta reconstructs to sha256 {self.hash.hexdigest()} "
                f"({self.done} bytes), not the listed {self.entry.sha256} ({self.entry.size} bytes)"
            )


# -- making a delta bundle ------------------------------------------------------------------------


def make_delta_bundle(old: Path, new: Path, out: Path) -> list[DeltaEntry]:
    """`bundle delta OLD NEW -o OUT`: each artifact of NEW with a base in OLD (same device types
    and payload type) becomes a delta against it; the others are carried whole."""
    with tempfile.TemporaryDirectory(prefix="delta-") as tmp_name:
        tmp = Path(tmp_name)
        bases = _artifacts(old, tmp / "old")
        members = _members(new, tmp / "new")
        entries: list[DeltaEntry] = []
        deltas: dict[str, Path] = {}
        for member, path in members:
            info = _info(path, member) if member.endswith(".mender") else None
            base = _base_for(info, bases) if info is not None else None
            if info is None or base is None:
                continue
            delta = tmp / "deltas" / f"{len(deltas)}.zst"
            delta.parent.mkdir(exist_ok=True)
            with open(delta, "wb") as sink:
                make_delta(base[0], path, sink)
            entry = DeltaEntry(
                member=member,
                name=info.name,
                sha256=file_sha256(path),
                size=path.stat().st_size,
                base_sha256=file_sha256(base[0]),
                base_name=base[1].name,
                delta=f"deltas/{Path(member).name}.{CODEC}",
            )
            entries.append(entry)
            deltas[member] = delta
        if not entries:
            raise DeltaError(
                f"{new.name}: no artifact has a base in {old.name} (same device types and payload type)"
            )
        _write_bundle(out, members, entries, deltas)
        return entries


def _write_bundle(
    out: Path, members: list[tuple[str, Path]], entries: list[DeltaEntry], deltas: dict[str, Path]
) -> None:
    index = json.dumps(
        {"format": FORMAT, "codec": CODEC, "artifacts": [e.to_json() for e in entries]}, indent=1
    ).encode()
    by_member = {e.member: e for e in entries}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, INDEX, index)
        for member, path in members:
            entry = by_member.get(member)
            if entry is None:
                tar.add(path, member, recursive=False)
            else:
                tar.add(deltas[member], entry.delta, recursive=False)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _members(bundle: Path, directory: Path) -> list[tuple[str, Path]]:
    """A bundle's regular files, extracted (the bundle form: docs/protocol.md §3.3)."""
    directory.mkdir(parents=True)
    found = []
    try:
        with tarfile.open(bundle, "r:*") as tar:
            for number, info in enumerate(tar):
                if not info.isfile():
                    continue
                if info.name == INDEX:
                    raise DeltaError(f"{bundle.name}: is a delta bundle already")
                path = directory / str(number)
                source = tar.extractfile(info)
                assert source is not None
                with source, open(path, "wb") as sink:
                    while chunk := source.read(_CHUNK):
                        sink.write(chunk)
                found.append((info.name, path))
    except (tarfile.TarError, OSError) as exc:
        raise DeltaError(f"{bundle.name}: not a readable bundle tar ({exc})") from None
    return found


def _artifacts(bundle: Path, directory: Path) -> list[tuple[Path, ArtifactInfo]]:
    return [(path, _info(path, m)) for m, path in _members(bundle, directory) if m.endswith(".mender")]


def _info(path: Path, member: str) -> ArtifactInfo:
    try:
        return read_artifact(path)
    except ArtifactError as exc:
        raise DeltaError(f"{member}: {exc}") from None


def _base_for(info: ArtifactInfo, bases: list[tuple[Path, ArtifactInfo]]) -> tuple[Path, ArtifactInfo] | None:
    for path, base in bases:
        if set(base.device_types) == set(info.device_types) and base.payload_type == info.payload_type:
            return path, base
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- reading a delta bundle -------------------------------------------------------------------------


def delta_size(bundle: Path, entry: DeltaEntry) -> int:
    with tarfile.open(bundle, "r:*") as tar:
        return tar.getmember(entry.delta).size


def read_index(bundle: Path) -> list[DeltaEntry] | None:
    """The delta index of a bundle file, or None when it is not a delta bundle (first member)."""
    try:
        with tarfile.open(bundle, "r:*") as tar:
            first = tar.next()
            if first is None or first.name != INDEX or not first.isfile():
                return None
            if first.size > MAX_INDEX:
                raise DeltaError(f"{INDEX}: larger than {MAX_INDEX} bytes")
            source = tar.extractfile(first)
            assert source is not None
            raw = source.read()
    except (tarfile.TarError, OSError):
        return None  # not a tar at all: the ordinary intake says what it is
    return parse_index(raw)


def parse_index(raw: bytes) -> list[DeltaEntry]:
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT or data.get("codec") != CODEC:
            raise DeltaError(
                f"{INDEX}: format {data.get('format')!r} / codec {data.get('codec')!r} is not ours"
            )
        return [_entry(e) for e in data["artifacts"]]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DeltaError(f"{INDEX}: not a delta index ({exc})") from None


def _entry(item: dict[str, object]) -> DeltaEntry:
    text = {k: str(item[k]) for k in ("member", "name", "sha256", "base_sha256", "base_name", "delta")}
    size = item["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TypeError(f"size {size!r} is not a byte count")
    return DeltaEntry(size=size, **text)


def missing_bases(entries: list[DeltaEntry], base_path: Callable[[str], Path | None]) -> list[str]:
    return [
        f"{e.base_name} (sha256 {e.base_sha256}), the base of {e.member}"
        for e in entries
        if base_path(e.base_sha256) is None
    ]


class RebuiltStream:
    """A stored delta, rebuilt against its stored base while it is read (at Download): the
    Reconstruction's checks apply, so a stream that ends cleanly is the listed artifact."""

    def __init__(self, base: Path, delta: Path, entry: DeltaEntry) -> None:
        self.file: IO[bytes] = open(delta, "rb")  # noqa: SIM115 - closed by close()
        try:
            self.rebuilt = Reconstruction(base, self.file, entry)
        except BaseException:
            self.file.close()
            raise
        self.size: int | None = entry.size

    def read(self, n: int = -1) -> bytes:
        return self.rebuilt.read(n)

    def verified(self) -> None:
        """Stored already: nothing to keep."""

    def close(self) -> None:
        self.file.close()
