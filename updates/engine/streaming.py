"""Server artifacts streamed into ``Download`` instead of stored whole first (docs/bytes.md).

At planning, an artifact the artifact server lists is not downloaded: only its head (version,
manifest, signature, header) is read and kept in a small *stream reference* file
(``<id>.mender-stream``), which the plan names in place of a `.mender` path. Selection reads the
header from there, verified like any artifact's. At ``Download`` the artifact is fetched again and
streamed straight into the interface's streams tree, verified as it passes: its manifest must be
the planned one (same bytes, so the same checksums and signature), every payload file is checked
against the manifest as it ends, and a mismatch fails that component's ``Download``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from updates.engine.artifact import ArtifactError, ArtifactInfo, ArtifactReader, PublicKey, read_artifact
from updates.engine.artifact.errors import ChecksumError
from updates.engine.workdir import PayloadSource

STREAM_SUFFIX = ".mender-stream"
WHOLE_NAME = "artifact.mender"  # the one stream of a packed (NeedsUnpackedArtifact: No) download
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StreamRef:
    """What the plan keeps of a server artifact it will stream: where it is, what it is."""

    server: str  # the artifact server's base URL (for messages; settings come from the config)
    id: str
    name: str
    size: int | None
    head: bytes = field(repr=False)  # the artifact's first bytes, through its header
    # A stored delta (docs/bytes.md): `id` is the delta's store sha256, rebuilt against the base
    # `base_sha256` into the artifact `sha256` of `size` bytes; no server is asked.
    base_sha256: str = ""
    sha256: str = ""

    def label(self) -> str:
        if self.base_sha256:
            return f"artifact {self.name!r} (rebuilt from its delta)"
        return f"artifact {self.name!r} (server id {self.id})"


_REF_START = b'{"server": '  # how write_ref's JSON line starts; a `.mender` starts "version\0"


def is_stream_ref(path: Path | None) -> bool:
    """A stream reference: by its name, or, at a bundle's artifact member that came as a delta
    (docs/bytes.md), by its first bytes (a regular file, so backups keep it like the rest)."""
    if path is None:
        return False
    if path.name.endswith(STREAM_SUFFIX):
        return True
    try:
        with open(path, "rb") as file:
            return file.read(len(_REF_START)) == _REF_START
    except OSError:
        return False


def ref_path(directory: Path, server: str, artifact_id: str) -> Path:
    key = hashlib.sha256(f"{server}\0{artifact_id}".encode()).hexdigest()[:32]
    return directory / f"{key}{STREAM_SUFFIX}"


def write_ref(path: Path, ref: StreamRef) -> None:
    """One JSON line, then the head bytes; written under a temporary name and renamed."""
    meta = {"server": ref.server, "id": ref.id, "name": ref.name, "size": ref.size}
    if ref.base_sha256:
        meta |= {"base_sha256": ref.base_sha256, "sha256": ref.sha256}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(json.dumps(meta).encode() + b"\n" + ref.head)
    tmp.replace(path)


def read_ref(path: Path) -> StreamRef:
    raw = Path(path).read_bytes()
    line, _, head = raw.partition(b"\n")
    meta = json.loads(line)
    return StreamRef(
        server=meta["server"],
        id=meta["id"],
        name=meta["name"],
        size=meta["size"],
        head=head,
        base_sha256=meta.get("base_sha256", ""),
        sha256=meta.get("sha256", ""),
    )


def read_planned(path: Path, *, keys: Sequence[PublicKey]) -> ArtifactInfo:
    """What selection knows of an artifact: a `.mender` fully verified, or a streamed one's
    header, verified (signature, header checksums) from its head; its payload is verified at
    Download, as it streams."""
    if not is_stream_ref(path):
        return read_artifact(path, keys=keys)
    reader = ArtifactReader(io.BytesIO(read_ref(path).head), keys=keys)
    return reader.read_header()


def planned_size(path: Path) -> int:
    if not is_stream_ref(path):
        return path.stat().st_size
    return read_ref(path).size or 0


class Recording:
    """A byte stream that remembers what was read from it (the head of an artifact)."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.seen = bytearray()
        self.recording = True  # set to False once the head is read: the rest passes unseen

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        if self.recording:
            self.seen += data
        return data


# -- at Download --------------------------------------------------------------------------------


class ArtifactStream(Protocol):
    """A server artifact's bytes from the start, as `StreamOpener.open` hands them out."""

    size: int | None

    def read(self, n: int = -1) -> bytes: ...

    def verified(self) -> None:
        """Every byte was read and the artifact verified: a cache may keep it now."""

    def close(self) -> None: ...


class StreamOpener(Protocol):
    """How the machine gets a streamed artifact's bytes (the server, or the artifacts cache)."""

    def open(self, ref: StreamRef) -> ArtifactStream: ...


class StreamMismatch(ChecksumError):
    """The bytes streamed at Download are not the artifact that was planned."""


def streamed_payloads(
    opener: StreamOpener | None,
    path: Path,
    planned: ArtifactInfo,
    *,
    unpacked: bool,
    keys: Sequence[PublicKey],
) -> Generator[PayloadSource, None, None]:
    """The payload streams of a streamed artifact: its payload files, or the whole `.mender`.

    Lazy: the connection opens when the first payload is asked for, so a server that fails
    fails this component's Download (the machine's `_guarded` turns it into a DownloadError)."""
    if opener is None:
        raise ArtifactError(f"{path.name}: no artifact server to stream from", None)
    ref = read_ref(path)
    stream = opener.open(ref)
    try:
        if unpacked:
            reader = ArtifactReader(stream, keys=keys)  # type: ignore[arg-type]  # duck-typed stream
            _same_manifest(reader.read_header(), planned, ref)
            yield from reader.payloads()
            reader.finish()
            _drain(stream)
        else:
            whole = VerifiedWhole(stream, ref, planned, keys=keys)
            yield whole
            whole.wait()
        stream.verified()
    finally:
        stream.close()


def _same_manifest(info: ArtifactInfo, planned: ArtifactInfo, ref: StreamRef) -> None:
    if info.manifest_raw != planned.manifest_raw:
        raise StreamMismatch(
            "the server now sends another artifact than the one planned (its manifest differs)", ref.label()
        )


def _drain(stream: ArtifactStream) -> None:
    """Read the tar's end padding too, so a cache that is filling sees the whole file."""
    while stream.read(_CHUNK):
        pass


class VerifiedWhole:
    """The whole `.mender` for a packed download, verified on the side while it passes.

    A reader on a thread parses the same bytes through a pipe; its error (bad signature, payload
    checksum, another artifact than planned) surfaces at the next read, at the latest at the end,
    before the interface can see a clean end of stream."""

    name = WHOLE_NAME

    def __init__(
        self, stream: ArtifactStream, ref: StreamRef, planned: ArtifactInfo, *, keys: Sequence[PublicKey]
    ) -> None:
        self.stream = stream
        self.size = stream.size if stream.size is not None else (ref.size or 0)
        self.error: BaseException | None = None
        read_fd, write_fd = os.pipe()
        self.pipe = os.fdopen(write_fd, "wb", buffering=0)
        self.thread = threading.Thread(
            target=self._verify, args=(os.fdopen(read_fd, "rb"), ref, planned, keys), daemon=True
        )
        self.thread.start()
        self.done = False

    def _verify(
        self, pipe: IO[bytes], ref: StreamRef, planned: ArtifactInfo, keys: Sequence[PublicKey]
    ) -> None:
        try:
            reader = ArtifactReader(pipe, keys=keys)
            _same_manifest(reader.read_header(), planned, ref)
            reader.finish()
        except BaseException as exc:  # reported to the reading side
            self.error = exc
        finally:
            while pipe.read(_CHUNK):  # keep taking bytes, so the writer never blocks
                pass
            pipe.close()

    def read(self, n: int = -1) -> bytes:
        if self.error is not None:
            raise self.error
        data = self.stream.read(n if n and n > 0 else _CHUNK)
        if data:
            view = memoryview(data)
            try:
                while view:
                    view = view[self.pipe.write(view) or 0 :]
            except BrokenPipeError:
                pass  # the verifier stopped: its error is raised at the next read
            return data
        self.wait()
        return b""

    def wait(self) -> None:
        if not self.done:
            self.done = True
            self.pipe.close()
            self.thread.join()
        if self.error is not None:
            raise self.error
