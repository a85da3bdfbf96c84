"""Bytes moved by long work (an upload read, a server download, a backup, a restore), for whoever
watches: the command line draws them on a terminal (updates/cli/progress.py). Nobody else
watches, and then a report costs one context-variable read. A context variable, so the watcher
follows the work into the engine's threads (updates/engine/threads.py copies the context) and
never crosses into another request's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

# (what is moving, bytes done, bytes in all or None when unknown)
Watcher = Callable[[str, int, int | None], None]
_watcher: ContextVar[Watcher | None] = ContextVar("transfer_watcher", default=None)


@contextmanager
def transfer_watch(watcher: Watcher) -> Iterator[None]:
    token = _watcher.set(watcher)
    try:
        yield
    finally:
        _watcher.reset(token)


def transfer_report(label: str, done: int, total: int | None) -> None:
    watcher = _watcher.get()
    if watcher is not None:
        watcher(label, done, total)


class CountingReader:
    """A binary file whose reads are reported as `label`'s progress: the position in the file,
    so a reader that seeks (tarfile, gzip) still reports where it is."""

    def __init__(self, fh: IO[bytes], label: str, total: int | None) -> None:
        self.fh, self.label, self.total, self.count = fh, label, total, 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.count += len(data)
        try:
            done = self.fh.tell()
        except (OSError, AttributeError):  # a stream without a position
            done = self.count
        transfer_report(self.label, done, self.total)
        return data

    def __getattr__(self, name: str) -> Any:  # seek, tell, readable, name, … as the file has them
        return getattr(self.fh, name)
