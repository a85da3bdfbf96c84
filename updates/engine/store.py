"""Content-addressed artifact store: ``<root>/<sha256>``, immutable once named.

Bytes arrive through a `StoreWriter`: hashed and written on a background thread while the caller
parses them, fsync'd, made read-only, and only then linked to their final name. A name therefore
always means "these exact, complete bytes", so a deployment that installs from the store never
reads a file that can still change. The same bytes stored twice end up as one file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from updates.engine.artifact.ranges import Lane, start_writeback
from updates.engine.errors import UnavailableError
from updates.engine.fsutil import fsync_dir, share_with_group, shared_rw_mode

SHA_RE = re.compile(r"[0-9a-f]{64}")
TMP_DIR = ".tmp"
# Writers take it shared while they create and lock a temp file, clean-up takes it exclusive
# while it probes: a temp file is never seen in the moment between its creation and its lock.
TMP_LOCK = ".tmp.lock"
# Space kept free for the database, the journal and the work dirs of a running deployment.
DEFAULT_RESERVE = 64 << 20
_QUEUE_CHUNKS = 64  # x 64 KiB chunks in flight: bounded memory whatever the upload size
_READ_ONLY = 0o444
# A lane-fed writer asks the kernel to start writing back every this many bytes, so the fsync at
# commit has little left to wait for (measured: extraction 1.48x faster, docs/performance.md).
_WRITEBACK_EVERY = 8 << 20


class StoreError(UnavailableError):
    """The store cannot take or give these bytes; names the file or member and the reason."""

    def __init__(self, reason: str, where: str | None = None) -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)


class NoSpaceError(StoreError):
    """Not enough free disk space for what is about to be written."""

    code = "no_space"
    http_status = 507


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size: int
    path: Path
    new: bool  # False: the same bytes were already stored (deduplicated)


@dataclass(frozen=True)
class StoreEntry:
    sha256: str
    size: int
    mtime: float


class _Sink(threading.Thread):
    """Hashes and writes chunks off the caller's thread: hashlib and file writes release the
    GIL, so hashing the whole file runs in parallel with the caller's own parsing and hashing."""

    def __init__(self, fileobj: IO[bytes] | None) -> None:
        super().__init__(daemon=True, name="store-sink")
        self.file = fileobj
        self.digest = hashlib.sha256()
        self.chunks: queue.Queue[bytes | None] = queue.Queue(_QUEUE_CHUNKS)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            if self.error is None:
                try:
                    self.digest.update(chunk)
                    if self.file is not None:
                        self.file.write(chunk)
                except BaseException as exc:  # re-raised in the caller's thread
                    self.error = exc


class BackgroundHash:
    """sha256 of a stream, computed on its own thread (the upload's hash, next to the others)."""

    def __init__(self) -> None:
        self._sink = _Sink(None)
        self._sink.start()
        self._digest: str | None = None

    def update(self, chunk: bytes) -> None:
        self._sink.chunks.put(bytes(chunk))

    def hexdigest(self) -> str:
        if self._digest is None:
            self._sink.chunks.put(None)
            self._sink.join()
            self._digest = self._sink.digest.hexdigest()
        return self._digest


class StoreWriter:
    """One object being written; `commit()` names it by its sha256, `abort()` forgets it.

    The temp file stays flock()ed while it is written: the kernel drops the lock when the
    process dies (SIGKILL, crash), which is how `ArtifactStore.leftovers()` tells a dead
    write from a live one, at once and whatever the PIDs since.
    """

    def __init__(self, store: ArtifactStore, label: str) -> None:
        self.store = store
        self.label = label
        with store.tmp_lock(fcntl.LOCK_SH):
            fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="in-", suffix=".part")
            fcntl.flock(fd, fcntl.LOCK_EX)
        self.tmp_path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._sink = self._start()
        self.size = 0
        self._synced = 0  # bytes whose writeback was started (lanes only)
        self._done = False

    def _start(self) -> _Sink:
        sink = _Sink(self._file)
        sink.start()
        return sink

    def lanes(self) -> list[Lane]:
        """Two consumers for a `ranges.Window` (each called on its own thread, in order): one
        hashes, one writes the caller's buffers as they are, without the copy `write` makes.
        Use them instead of `write`, never with it."""
        return [self._sink.digest.update, self._write_view]

    def _write_view(self, view: memoryview) -> None:
        fd, size = self._file.fileno(), len(view)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            self._sink.error = exc
            self._raise_sink_error()
        self.size += size
        if self.size - self._synced >= _WRITEBACK_EVERY:
            start_writeback(fd, self._synced, self.size - self._synced)
            self._synced = self.size

    def write(self, chunk: bytes) -> None:
        self._raise_sink_error()
        self.size += len(chunk)
        self._sink.chunks.put(bytes(chunk))

    def reset(self) -> None:
        """Start over from byte 0 (a server ignored a Range request and sent everything)."""
        self._finish_sink()
        self._file.seek(0)
        self._file.truncate()
        self.size = 0
        self._sink = self._start()

    def flush(self) -> None:
        """Wait until everything written so far is in the file (e.g. to re-read it)."""
        self._finish_sink()
        self._file.flush()
        self._sink = self._start()

    def commit(self) -> StoredObject:
        self._finish_sink()
        self._file.flush()
        os.fsync(self._file.fileno())
        # Named while still open, i.e. locked: a clean-up never takes the temp file meanwhile.
        stored = self.store._adopt(self.tmp_path, self._sink.digest.hexdigest(), self.size)
        self._done = True
        self._file.close()
        return stored

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(BaseException):
            self._finish_sink()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()
        self._file.close()

    def _finish_sink(self) -> None:
        self._sink.chunks.put(None)
        self._sink.join()
        self._raise_sink_error()

    def _raise_sink_error(self) -> None:
        error = self._sink.error
        if error is None:
            return
        if isinstance(error, OSError) and error.errno == 28:
            raise NoSpaceError("disk full while writing", self.label) from error
        raise StoreError(f"cannot write the store: {error}", self.label) from error

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()  # a no-op after commit()


class ArtifactStore:
    def __init__(self, root: Path, *, reserve_bytes: int = DEFAULT_RESERVE) -> None:
        self.root = Path(root)
        self.reserve_bytes = reserve_bytes
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    @property
    def tmp_dir(self) -> Path:
        return self.root / TMP_DIR

    @contextlib.contextmanager
    def tmp_lock(self, mode: int) -> Iterator[None]:
        # Every writer opens it, the root worker and the web server alike (fsutil.shared_rw_mode),
        # whatever the umask of the process that made it.
        fd = os.open(self.root / TMP_LOCK, os.O_RDWR | os.O_CREAT, shared_rw_mode(self.root))
        share_with_group([self.root / TMP_LOCK])
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the lock

    def path(self, sha256: str) -> Path:
        if not SHA_RE.fullmatch(sha256):
            raise StoreError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def writer(self, label: str, *, expected_size: int | None = None) -> StoreWriter:
        if expected_size is not None:
            self.ensure_space(expected_size, label)
        return StoreWriter(self, label)

    def ensure_space(self, nbytes: int, label: str) -> None:
        free = shutil.disk_usage(self.root).free
        if nbytes + self.reserve_bytes > free:
            raise NoSpaceError(
                f"needs {nbytes} bytes but only {free} are free (keeping {self.reserve_bytes} in reserve)",
                label,
            )

    def _adopt(self, tmp: Path, sha256: str, size: int) -> StoredObject:
        final = self.path(sha256)
        tmp.chmod(_READ_ONLY)
        try:
            # link() refuses to replace: a name, once there, keeps the bytes it was given.
            os.link(tmp, final)
            new = True
        except FileExistsError:
            new = False
        tmp.unlink()
        fsync_dir(self.root)
        if not new:
            os.utime(final)  # mtime = last stored: the age "oldest unused" eviction goes by
        return StoredObject(sha256, size, final, new)

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()

    def entries(self) -> list[StoreEntry]:
        found = []
        for path in self.root.iterdir():
            if SHA_RE.fullmatch(path.name) and path.is_file():
                stat = path.stat()
                found.append(StoreEntry(path.name, stat.st_size, stat.st_mtime))
        return found

    def leftovers(self) -> list[Path]:
        """Temp files of writes that died (crash, kill): those no live writer holds locked."""
        with self.tmp_lock(fcntl.LOCK_EX):
            return [p for p in sorted(self.tmp_dir.iterdir()) if _unlocked(p)]


def _unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # gone meanwhile, or not ours to judge: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live writer holds it
    finally:
        os.close(fd)
    return True


@dataclass(frozen=True)
class Eviction:
    evict: tuple[StoreEntry, ...]
    kept_bytes: int


def plan_eviction(
    entries: Iterable[StoreEntry], *, needed: set[str], last_used: dict[str, float], budget: int
) -> Eviction:
    """What to delete so the artifacts not `needed` fit in `budget` bytes (0 = unlimited),
    oldest unused first. Needed artifacts are always kept and do not count against the budget."""
    optional = sorted(
        (e for e in entries if e.sha256 not in needed),
        key=lambda e: (last_used.get(e.sha256, e.mtime), e.sha256),
    )
    total = sum(e.size for e in optional)
    evict: list[StoreEntry] = []
    for entry in optional:
        if budget == 0 or total <= budget:
            break
        evict.append(entry)
        total -= entry.size
    return Eviction(tuple(evict), total)
