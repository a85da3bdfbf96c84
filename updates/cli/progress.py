"""Progress of long work on a terminal: bytes done / total and the rate, on one stderr line that
is redrawn in place and cleared when the work ends or another line is printed. Only when stderr
is a terminal and Mender's update module is not the caller: piped, redirected or run by the
module, the command prints nothing extra. The work reports through updates/engine/transfer.py
(a bundle read, a server download, a backup, a restore)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from updates.actors import actor_of_command_line
from updates.engine.transfer import transfer_watch

# At most five redraws a second; work shorter than one interval never draws. The tests shorten it
# (ORCH_TEST_PROGRESS_SECONDS, docs/environment.md §1.5) so small files draw on any machine.
REDRAW_SECONDS = float(os.environ.get("ORCH_TEST_PROGRESS_SECONDS") or 0.2)
MIB = 2**20


def _size(count: float) -> str:
    return f"{count / MIB:.1f} MiB"


class Line:
    """One line redrawn in place; the rate is over the whole of the current label's work."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.clock = out, clock
        self.lock = threading.Lock()
        self.label = ""
        self.started = self.drawn = 0.0
        self.shown = False

    def __call__(self, label: str, done: int, total: int | None) -> None:
        with self.lock:
            now = self.clock()
            if label != self.label:
                self.label, self.started, self.drawn = label, now, now
                return  # the first read: no rate yet, and short work never draws
            if total is not None and done >= total:
                self._clear()  # done: the command's own report follows on a clean line
                return
            if now - self.drawn < REDRAW_SECONDS:
                return
            self.drawn = now
            rate = done / (now - self.started) if now > self.started else 0.0
            of = f" / {_size(total)} ({done * 100 // max(total, 1)}%)" if total else ""
            self.out.write(f"\r{label}: {_size(done)}{of}, {_size(rate)}/s\x1b[K")
            self.out.flush()
            self.shown = True

    def clear(self) -> None:
        with self.lock:
            self._clear()

    def _clear(self) -> None:
        if self.shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.shown = False


_current: Line | None = None


def interrupt() -> None:
    """Before a line of the command's own on stderr: the progress line makes way for it."""
    if _current is not None:
        _current.clear()


def wanted(out: TextIO) -> bool:
    """A person watching: a terminal, and not the update module (its output goes to Mender's log)."""
    if not out.isatty() or os.environ.get("TERM") == "dumb":
        return False
    return actor_of_command_line().via != "update-module"


@contextmanager
def terminal_progress(out: TextIO | None = None) -> Iterator[None]:
    global _current
    stream = out or sys.stderr
    if not wanted(stream):
        yield
        return
    line = _current = Line(stream)
    try:
        with transfer_watch(line):
            yield
    finally:
        line.clear()
        _current = None
