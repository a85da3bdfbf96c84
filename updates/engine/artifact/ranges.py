"""Byte ranges of a regular file, read forward with `pread` straight into the caller's buffer.

The artifact reader's fast path for a file on disk (docs/performance.md, "Bytes"): tarfile
reads only the 512-byte headers through a `Window`, and payload bytes go from the page cache
into a reused buffer in one copy (`os.preadv`), then to the hash and the writer as memoryviews.
tarfile's stream mode instead copies every byte through its own buffer once per tar layer.

A window reads strictly forward, so every byte in it is read once and in order: what was
verified is what the writer got. A window may carry *lanes*: consumers (a digest, a file
write) that get every byte of the window, skipped padding included, each on its own thread
(`hashlib` and `write` release the GIL). A view handed to the lanes stays untouched until
they are done with it: every read on the file waits for them first (`Fan.wait`), and a
caller only reuses its buffer for its next read.
"""

from __future__ import annotations

import ctypes
import os
import queue
import stat
import threading
from collections.abc import Callable, Sequence

# Forward skips of a window with lanes read through this much at a time.
_SKIP_CHUNK = 1 << 20

Lane = Callable[[memoryview], None]


class Fan:
    """The lanes' threads: each lane takes its views in order; `wait` is the barrier."""

    def __init__(self) -> None:
        self._threads: list[_LaneThread] = []

    def lane(self, consume: Lane) -> _LaneThread:
        thread = _LaneThread(consume)
        thread.start()
        self._threads.append(thread)
        return thread

    def wait(self) -> None:
        """Every view handed out so far is consumed; re-raise a lane's error here."""
        for thread in self._threads:
            thread.settle()
        for thread in self._threads:
            if thread.error is not None:
                raise thread.error

    def stop(self, threads: Sequence[_LaneThread]) -> None:
        """End these lanes (their window is done with); their errors go with them."""
        for thread in threads:
            thread.stop()
            self._threads.remove(thread)

    def close(self) -> None:
        self.stop(list(self._threads))


class _LaneThread(threading.Thread):
    def __init__(self, consume: Lane) -> None:
        super().__init__(daemon=True, name="byte-lane")
        self._consume = consume
        self.error: BaseException | None = None
        self._jobs: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._done = threading.Semaphore(0)
        self._outstanding = 0

    def give(self, view: memoryview) -> None:
        self._outstanding += 1
        self._jobs.put(view)

    def settle(self) -> None:
        while self._outstanding:
            self._done.acquire()
            self._outstanding -= 1

    def stop(self) -> None:
        self.settle()
        self._jobs.put(None)
        self.join()

    def run(self) -> None:
        while (view := self._jobs.get()) is not None:
            if self.error is None:
                try:
                    self._consume(view)
                except BaseException as exc:  # re-raised by the reading thread (Fan.wait)
                    self.error = exc
            self._done.release()


class Window:
    """Bytes [start, start + size) of `parent` (a FileSource or a Window), read forward only.

    Reads past the end come back short, as at the end of a file; a parent that ends first
    raises EOFError (the file is cut short of what its tar header says). `lanes` get every byte read or
    skipped, in order. Seeking backward is refused: it would hand a byte to the lanes twice."""

    def __init__(
        self, parent: FileSource | Window, start: int, size: int, lanes: Sequence[Lane] = ()
    ) -> None:
        parent.seek(start)
        self._parent = parent
        self._start = start
        self.fan: Fan = parent.fan
        self.size = size
        self._pos = 0
        self._lanes = [self.fan.lane(consume) for consume in lanes]
        self.tees: bool = bool(self._lanes) or parent.tees  # whether a skip has to read the bytes

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: pos, os.SEEK_CUR: self._pos + pos, os.SEEK_END: self.size + pos}[whence]
        if target < self._pos:
            raise ValueError("a byte window reads forward only")
        if self.tees:
            self._skip_reading(target)
        else:
            self._parent.seek(self._start + min(target, self.size))
            self._pos = target
        return self._pos

    def _skip_reading(self, target: int) -> None:
        scratch = bytearray(min(_SKIP_CHUNK, max(target - self._pos, 1)))
        while self._pos < target and self.readinto(memoryview(scratch)[: target - self._pos]):
            pass
        self._pos = max(self._pos, target)

    def read(self, n: int = -1) -> bytes:
        left = max(self.size - self._pos, 0)
        want = left if n is None or n < 0 else min(n, left)
        buffer = bytearray(want)
        count = self._fill(memoryview(buffer))
        return bytes(buffer) if count == want else bytes(buffer[:count])

    def _fill(self, view: memoryview) -> int:
        have = 0
        while have < len(view) and (count := self.readinto(view[have:])):
            have += count
        return have

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        view = view[: max(min(len(view), self.size - self._pos), 0)]
        if not view:
            return 0
        count = self._parent.readinto(view)
        if not count:  # as tarfile's stream mode says when a member's declared bytes run out
            raise EOFError("unexpected end of data")
        self._pos += count
        if count and self._lanes:
            part = view[:count]
            for lane in self._lanes:
                lane.give(part)
        return count

    def close(self) -> None:
        """Wait for this window's lanes and end them (not its parent's)."""
        lanes, self._lanes = self._lanes, []
        self.fan.stop(lanes)


class FileSource:
    """An open regular file from `start` on, read with pread: the bottom of a stack of windows."""

    tees: bool = False

    def __init__(self, fd: int, start: int, progress: Callable[[int], None] | None = None) -> None:
        self._fd = fd
        self._pos = start
        self.fan = Fan()
        self._progress = progress

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        self.fan.wait()
        if pos < self._pos:
            raise ValueError("a byte window reads forward only")
        self._pos = pos

    def readinto(self, view: memoryview) -> int:
        self.fan.wait()  # the lanes are done with whatever buffer the caller hands us again
        count = os.preadv(self._fd, [view], self._pos)
        self._pos += count
        if self._progress is not None:
            self._progress(self._pos)
        return count

    def close(self) -> None:
        self.fan.close()


def file_window(
    fd: int, start: int, lanes: Sequence[Lane] = (), progress: Callable[[int], None] | None = None
) -> Window:
    """The open file `fd` from `start` to its end, as a window (`progress`: the file position
    after each read)."""
    return Window(FileSource(fd, start, progress), start, max(os.fstat(fd).st_size - start, 0), lanes)


def is_regular_file(fileobj: object) -> bool:
    """A seekable file on disk, which `file_window` can read (not a pipe, socket or stream)."""
    fileno = getattr(fileobj, "fileno", None)
    if fileno is None or not getattr(fileobj, "seekable", lambda: False)():
        return False
    try:
        return stat.S_ISREG(os.fstat(fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


# -- writeback started early, so the fsync at the end has little left to wait for ---------------

_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing [offset, offset + length) to disk now, without waiting
    (sync_file_range SYNC_FILE_RANGE_WRITE). Durability still comes from the fsync at the end;
    this only lets the disk work while we hash and write the rest."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
