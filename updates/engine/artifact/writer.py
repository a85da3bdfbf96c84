"""Writer of Mender Artifacts (format v3) with mender-artifact 3.9's defaults.

Big payloads are hashed in a first pass (the manifest precedes the data) and then streamed
into a temporary data tar, so memory use does not depend on payload size. The output appears
under its final name only once complete, and is byte-for-byte reproducible (mtime 0, no names).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import zstandard

from .errors import ChecksumError, FormatError, HeaderError, UnsafeMemberError
from .headers import (
    DATA_PREFIX,
    HEADER_INFO,
    META_DATA,
    TYPE_INFO,
    check_artifact_name,
    parse_header_info,
    parse_type_info,
)
from .limits import Limits
from .model import ArtifactInfo, PayloadFile
from .names import PAYLOAD_TYPE_RE, SUFFIXES, check_payload_name, check_script_name
from .reader import CHUNK, _HeaderParts, assemble_info
from .signing import SIG_MEMBER, PrivateKey, sign_manifest

VERSION_BYTES = b'{"format":"mender","version":3}'
_MAX_PAYLOAD_NAME = 100 - len(DATA_PREFIX)  # the device client caps manifest names at 100
Kind = Literal["module-image", "rootfs-image"]
Compression = Literal["none", "gzip", "lzma", "zstd_fastest", "zstd_default", "zstd_better", "zstd_best"]
# mender-artifact's zstd names are the Go encoder's speed presets; these are the zstd levels
# they correspond to.
ZSTD_LEVELS = {"zstd_fastest": 1, "zstd_default": 3, "zstd_better": 7, "zstd_best": 11}


def _json(value: object) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise HeaderError(f"not serialisable as JSON: {exc}")


@dataclass(frozen=True)
class _Spec:
    kind: Kind
    name: str
    device_types: Sequence[str]
    files: Sequence[Path]
    payload_type: str | None
    provides: Mapping[str, str]
    depends: Mapping[str, str | Sequence[str]]
    clears_provides: Sequence[str] | None
    no_default_clears_provides: bool
    no_default_software_version: bool
    software_name: str | None
    software_version: str | None
    software_filesystem: str | None
    group: str | None
    depends_artifact_name: Sequence[str]
    depends_artifact_group: Sequence[str]
    meta_data: Mapping[str, object] | None
    scripts: Sequence[Path]
    compression: Compression
    signing_key: PrivateKey | None


def _software_provides(opts: _Spec, payload_type: str) -> dict[str, str]:
    """`<filesystem>[.<software name>].version`, exactly as mender-artifact 3.9 derives it."""
    key = opts.software_filesystem or "rootfs-image"
    software_name, version = opts.software_name, opts.software_version
    if not opts.no_default_software_version:
        software_name = software_name or (payload_type if opts.kind == "module-image" else None)
        version = version or opts.name
    if software_name:
        key += f".{software_name}"
    return {f"{key}.version": version} if version else {}


def _default_clears(opts: _Spec, payload_type: str) -> list[str]:
    filesystem = opts.software_filesystem or "rootfs-image"
    if opts.software_name:
        return [f"{filesystem}.{opts.software_name}.*"]
    if opts.kind == "module-image":
        return [f"{filesystem}.{payload_type}.*"]
    legacy = ["artifact_group", "rootfs_image_checksum"] if filesystem == "rootfs-image" else []
    return [*legacy, f"{filesystem}.*"]


def _file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _check_inputs(names: Sequence[str], device_types: Sequence[str], scripts: Sequence[Path]) -> None:
    if not device_types or not all(isinstance(d, str) and d for d in device_types):
        raise HeaderError("at least one non-empty device type is required", HEADER_INFO)
    for name in names:
        check_payload_name(name, DATA_PREFIX + name)
        if len(name) > _MAX_PAYLOAD_NAME:
            raise UnsafeMemberError(f"payload file name longer than {_MAX_PAYLOAD_NAME} characters", name)
    for script in scripts:
        check_script_name(script.name, f"scripts/{script.name}")
    for label, items in (("payload file", names), ("state script", [s.name for s in scripts])):
        if len(set(items)) != len(items):
            raise UnsafeMemberError(f"duplicate {label} name")


def _check_type(kind: str, payload_type: str | None, files: Sequence[Path]) -> str:
    if kind == "rootfs-image":
        if payload_type not in (None, "rootfs-image") or len(files) != 1:
            raise FormatError("rootfs-image takes exactly one file and no other payload type")
        return "rootfs-image"
    if kind != "module-image" or not payload_type or not PAYLOAD_TYPE_RE.fullmatch(payload_type):
        raise HeaderError(f"module-image needs a valid payload type (got {payload_type!r})", HEADER_INFO)
    return payload_type


def _header_info(spec: _Spec, payload_type: str) -> bytes:
    provides: dict[str, str] = {"artifact_name": check_artifact_name(spec.name, HEADER_INFO)}
    if spec.group is not None:
        provides["artifact_group"] = spec.group
    # Key order follows mender-artifact's Go structs, so our output reads the same as theirs.
    depends: dict[str, list[str]] = {}
    if spec.depends_artifact_name:
        depends["artifact_name"] = list(spec.depends_artifact_name)
    depends["device_type"] = list(spec.device_types)
    if spec.depends_artifact_group:
        depends["artifact_group"] = list(spec.depends_artifact_group)
    doc = {"payloads": [{"type": payload_type}], "artifact_provides": provides, "artifact_depends": depends}
    return _json(doc)


def _type_info(
    payload_type: str, provides: Mapping[str, str], depends: Mapping[str, object], clears: list[str]
) -> bytes:
    doc: dict[str, object] = {"type": payload_type}
    if depends:
        doc["artifact_depends"] = dict(sorted(depends.items()))
    if provides:
        doc["artifact_provides"] = dict(sorted(provides.items()))
    if clears:
        doc["clears_artifact_provides"] = clears
    return _json(doc)


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if compression in ZSTD_LEVELS:
        return zstandard.ZstdCompressor(level=ZSTD_LEVELS[compression]).compress(data)
    return data


@contextlib.contextmanager
def _compressing(raw: IO[bytes], compression: Compression) -> Iterator[IO[bytes]]:
    if compression == "none":
        yield raw
        return
    stream: IO[bytes]
    if compression == "gzip":
        # filename="" keeps the temp file's name out of the gzip header (reproducibility).
        stream = gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0)  # type: ignore[assignment]
    elif compression in ZSTD_LEVELS:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVELS[compression])
        stream = compressor.stream_writer(raw, closefd=False)
    else:
        stream = lzma.LZMAFile(raw, "wb", format=lzma.FORMAT_XZ)  # noqa: SIM115
    with stream:
        yield stream


class _HashingReader:
    """Re-hashes a payload file while it is copied, to notice a change between the two passes."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        self.digest.update(data)
        return data


Entries = Sequence[tuple[Path, PayloadFile]]


def _write_data_tar(out: IO[bytes], files: Entries, compression: Compression) -> None:
    with (
        _compressing(out, compression) as stream,
        tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar,
    ):
        for path, entry in files:
            info = tarfile.TarInfo(entry.name)
            info.size, info.mode = entry.size, 0o644
            with open(path, "rb") as source:
                reader = _HashingReader(source)
                tar.addfile(info, reader)
            if reader.digest.hexdigest() != entry.sha256:
                raise ChecksumError("file changed while the artifact was being written", str(path))


@contextlib.contextmanager
def _temp_file(directory: Path, prefix: str) -> Iterator[tuple[IO[bytes], Path]]:
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    path = Path(name)
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _type_info_for(spec: _Spec, payload_type: str, entries: Entries) -> bytes:
    provides = _software_provides(spec, payload_type)
    if spec.kind == "rootfs-image":
        provides["rootfs-image.checksum"] = entries[0][1].sha256
    provides.update(spec.provides)  # explicit -p wins over the defaults, as in mender-artifact
    if not all(isinstance(v, str) for v in provides.values()):
        raise HeaderError("provides values must be strings", TYPE_INFO)
    depends = {k: v if isinstance(v, str) else list(v) for k, v in spec.depends.items()}
    clears = list(spec.clears_provides or ())
    if not (spec.no_default_clears_provides or spec.no_default_software_version):
        clears += _default_clears(spec, payload_type)
    return _type_info(payload_type, provides, depends, clears)


def _meta_data(spec: _Spec) -> bytes | None:
    # mender-artifact writes an empty meta-data for rootfs-image and none for module-image.
    if spec.meta_data is None:
        return b"" if spec.kind == "rootfs-image" else None
    if not isinstance(spec.meta_data, Mapping):
        raise HeaderError("meta-data must be a JSON object", META_DATA)
    return _json(dict(spec.meta_data))


def _header_parts(spec: _Spec, payload_type: str, entries: Entries) -> _HeaderParts:
    return _HeaderParts(
        header_info=_header_info(spec, payload_type),
        type_info=_type_info_for(spec, payload_type, entries),
        meta_data=_meta_data(spec),
        scripts=tuple(script.name for script in spec.scripts),
    )


def _header_tar(parts: _HeaderParts, scripts: Sequence[Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _tar_member(tar, HEADER_INFO, parts.header_info or b"")
        for script in scripts:
            _tar_member(tar, f"scripts/{script.name}", script.read_bytes(), 0o755)
        _tar_member(tar, TYPE_INFO, parts.type_info or b"")
        if parts.meta_data is not None:
            _tar_member(tar, META_DATA, parts.meta_data)
    return buffer.getvalue()


def _manifest(entries: Entries, header_name: str, header: bytes) -> bytes:
    lines = [f"{entry.sha256}  {DATA_PREFIX}{entry.name}\n" for _, entry in entries]
    lines.append(f"{hashlib.sha256(header).hexdigest()}  {header_name}\n")
    lines.append(f"{hashlib.sha256(VERSION_BYTES).hexdigest()}  version\n")
    return "".join(lines).encode()


def _write_outer(output: Path, members: Sequence[tuple[str, bytes]], entries: Entries, spec: _Spec) -> None:
    directory, suffix = output.parent, SUFFIXES[spec.compression]
    with (
        _temp_file(directory, f".{output.name}.data.") as (data, _),
        _temp_file(directory, f".{output.name}.") as (out, out_path),
    ):
        _write_data_tar(data, entries, spec.compression)
        info = tarfile.TarInfo(f"data/0000.tar{suffix}")
        info.size, info.mode = data.tell(), 0o600
        data.seek(0)
        with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
            for name, content in members:
                _tar_member(tar, name, content)
            tar.addfile(info, data)
        out.flush()
        os.fsync(out.fileno())
        out_path.replace(output)


def _hash_files(files: Sequence[Path]) -> list[tuple[Path, PayloadFile]]:
    entries = []
    for path in files:
        sha, size = _file_sha256(path)
        entries.append((path, PayloadFile(path.name, size, sha)))
    return entries


def _write(output: Path, spec: _Spec) -> ArtifactInfo:
    payload_type = _check_type(spec.kind, spec.payload_type, spec.files)
    _check_inputs([f.name for f in spec.files], spec.device_types, spec.scripts)
    entries = _hash_files(spec.files)
    parts = _header_parts(spec, payload_type, entries)
    header_name = f"header.tar{SUFFIXES[spec.compression]}"
    header = _compress(_header_tar(parts, spec.scripts), spec.compression)
    manifest = _manifest(entries, header_name, header)
    members = [("version", VERSION_BYTES), ("manifest", manifest)]
    if spec.signing_key is not None:
        members.append((SIG_MEMBER, sign_manifest(spec.signing_key, manifest)))
    _write_outer(output, [*members, (header_name, header)], entries, spec)
    return _describe(spec, parts, entries, manifest)


def _describe(spec: _Spec, parts: _HeaderParts, entries: Entries, manifest: bytes) -> ArtifactInfo:
    # Parse what we wrote with the reader's own functions, so both sides agree by construction.
    limits = Limits()
    header = parse_header_info(parts.header_info or b"", limits)
    type_info = parse_type_info(parts.type_info or b"", header.payload_type, limits)
    signer = None if spec.signing_key is None else spec.signing_key.public_key()
    kind = (
        "zstd"
        if spec.compression in ZSTD_LEVELS
        else {"none": "none", "gzip": "gzip", "lzma": "xz"}[spec.compression]
    )
    files = tuple(entry for _, entry in entries)
    sig = (signer is not None, signer)
    return assemble_info(header, type_info, parts, files, kind, manifest, sig, limits)


def write_artifact(
    output: str | os.PathLike[str],
    *,
    kind: Kind,
    name: str,
    device_types: Sequence[str],
    files: Sequence[Path],
    payload_type: str | None = None,
    provides: Mapping[str, str] = {},
    depends: Mapping[str, str | Sequence[str]] = {},
    clears_provides: Sequence[str] | None = None,
    no_default_clears_provides: bool = False,
    no_default_software_version: bool = False,
    software_name: str | None = None,
    software_version: str | None = None,
    software_filesystem: str | None = None,
    group: str | None = None,
    depends_artifact_name: Sequence[str] = (),
    depends_artifact_group: Sequence[str] = (),
    meta_data: Mapping[str, object] | None = None,
    scripts: Sequence[Path] = (),
    compression: Compression = "gzip",
    signing_key: PrivateKey | None = None,
) -> ArtifactInfo:
    """Write a module-image or rootfs-image artifact with mender-artifact 3.9's defaults."""
    if compression not in SUFFIXES:
        raise FormatError(f"unknown compression {compression!r} ({', '.join(SUFFIXES)})")
    spec = _Spec(
        kind,
        name,
        tuple(device_types),
        tuple(Path(f) for f in files),
        payload_type,
        dict(provides),
        dict(depends),
        clears_provides,
        no_default_clears_provides,
        no_default_software_version,
        software_name,
        software_version,
        software_filesystem,
        group,
        tuple(depends_artifact_name),
        tuple(depends_artifact_group),
        meta_data,
        tuple(Path(s) for s in scripts),
        compression,
        signing_key,
    )
    return _write(Path(output), spec)
