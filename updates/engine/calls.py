"""One started interface process and what it answers: the call types that both the runner
(`updates.engine.interface`) and the Download server (`updates.engine.workdir`) use.

Kept below both so that neither imports the other in a circle: the runner starts calls and
hands Download to `workdir.run_download`, which drives the `RunningCall` it gets back.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Literal

from updates.engine.errors import UnavailableError

CAPTURE_LIMIT = 64 * 1024
# After the interface exits, a child it left behind may still hold our pipes open; we stop
# capturing after this long instead of waiting for that child forever.
_DRAIN_GRACE = 1.0
# poll() takes an int of milliseconds: a day keeps any runner timeout in range (the caller's
# Popen.wait then still enforces the exact deadline).
_POLL_CAP = 86400.0


class InterfaceError(UnavailableError):
    """Base of everything that goes wrong around an interface call."""

    code = "interface_error"


class InterfaceNotFound(InterfaceError):
    """No usable executable for the interface name; the message lists every path searched."""


class ProtocolError(InterfaceError):
    """An interface answered a query with something the protocol does not allow."""


@dataclass(frozen=True)
class CallResult:
    argv: tuple[str, ...]
    exit_code: int | None  # None when killed by timeout; negative = killed by that signal
    stdout: str  # first CAPTURE_LIMIT bytes (decoded), plus a note when truncated
    stderr: str  # last CAPTURE_LIMIT bytes (decoded), after a note when truncated
    started_at: float
    ended_at: float
    timed_out: bool
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at


class _Capture:
    """Drains one pipe in a thread, keeping the head or the tail of what was written."""

    def __init__(
        self,
        pipe: IO[bytes],
        *,
        keep: Literal["head", "tail"],
        limit: int = CAPTURE_LIMIT,
        threaded: bool = True,
    ) -> None:
        self._pipe = pipe
        self.fd = pipe.fileno()
        self._keep = keep
        self._limit = limit
        self._buf = bytearray()
        self._dropped = 0
        self._stop = threading.Event()
        # Threaded when the caller is busy elsewhere (serving Download's FIFOs); a plain call
        # drains both pipes in its own thread instead (RunningCall._pump): two fewer threads
        # per interface call, which is most of the orchestrator's per-call overhead.
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name=f"capture-{keep}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # poll() rather than a blocking read so finish() can abandon a pipe that a leftover
        # grandchild keeps open; poll() also has no FD_SETSIZE limit, unlike select().
        fd = self._pipe.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        try:
            while not self._stop.is_set():
                if poller.poll(100) and not self._read_once(fd):
                    return
            # Stopped: take what is already buffered in the pipe (it is small), then leave even
            # if a leftover child keeps writing.
            for _ in range(16):
                if not poller.poll(0) or not self._read_once(fd):
                    return
        finally:
            self._pipe.close()

    def read_once(self) -> bool:
        """One read (the pipe is readable); False at EOF."""
        return self._read_once(self.fd)

    def _read_once(self, fd: int) -> bool:
        """One read; False at EOF."""
        chunk = os.read(fd, 65536)
        self._add(chunk)
        return bool(chunk)

    def _add(self, chunk: bytes) -> None:
        if self._keep == "head":
            room = max(0, self._limit - len(self._buf))
            self._buf += chunk[:room]
            self._dropped += len(chunk) - min(room, len(chunk))
            return
        self._buf += chunk
        excess = len(self._buf) - self._limit
        if excess > 0:
            del self._buf[:excess]
            self._dropped += excess

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def finish(self) -> tuple[str, bool]:
        """Stop (after draining what is already buffered) and return (text, truncated)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        elif not self._pipe.closed:
            self._pipe.close()
        return self._text(), self._dropped > 0

    def _text(self) -> str:
        text = self._buf.decode("utf-8", errors="replace")
        if not self._dropped:
            return text
        if self._keep == "head":
            return f"{text}\n[output truncated: {self._dropped} more bytes not kept]\n"
        return f"[output truncated: first {self._dropped} bytes not kept]\n{text}"


class RunningCall:
    """One started interface process. Not thread-safe: one owner drives it."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        argv: tuple[str, ...],
        *,
        timeout: float,
        kill_grace: float,
        threaded: bool = True,
    ) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.pid = proc.pid
        self.argv = argv
        self.started_at = time.time()
        self._deadline = time.monotonic() + timeout
        self._proc = proc
        self._kill_grace = kill_grace
        self._threaded = threaded
        self._out = _Capture(proc.stdout, keep="head", threaded=threaded)
        self._err = _Capture(proc.stderr, keep="tail", threaded=threaded)
        self._timed_out = False
        self._result: CallResult | None = None
        self._pidfd = _pidfd(proc.pid)

    def poll(self) -> int | None:
        return self._proc.poll()

    def remaining(self) -> float:
        """Seconds left before the runner timeout; 0 once it has passed."""
        return max(0.0, self._deadline - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0

    def kill(self) -> None:
        """Stop the whole process group now: SIGTERM, then SIGKILL after the grace period."""
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(self._kill_grace)
        # Always follow up with SIGKILL: children that ignored SIGTERM (or outlived the leader)
        # must not survive. While any member lives, the kernel keeps the group id reserved.
        self._signal_group(signal.SIGKILL)
        # Bounded even here: a process stuck in uninterruptible I/O must not hang the orchestrator.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(self._kill_grace + 5)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def wait(self) -> CallResult:
        """Wait for the exit (killing the group at the runner timeout) and collect the output."""
        if self._result is None:
            if not self._threaded:
                self._pump()
            self._await_exit()
            try:
                self._proc.wait(self.remaining())
            except subprocess.TimeoutExpired:
                self._timed_out = True
                self.kill()
            self._result = self._collect()
        return self._result

    def _await_exit(self) -> None:
        """Block until the process exits or the runner timeout passes. `Popen.wait(timeout)`
        polls with sleeps of 1, 2, 4 … ms instead, and the pipes reach EOF a moment before the
        process can be reaped: that first sleep was most of what a call cost us beyond its own
        fork/exec. The pidfd becomes readable the moment the process exits."""
        if self._pidfd is None:
            return
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        poller.poll(min(self.remaining(), _POLL_CAP) * 1000)

    def _pump(self) -> None:
        """Drain both pipes in this thread until both reach EOF (normally: the process exited),
        the runner timeout passes, or the process is gone while a leftover child holds a pipe."""
        captures = {self._out.fd: self._out, self._err.fd: self._err}
        poller = select.poll()
        for fd in captures:
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        exited_at: float | None = None
        while captures and not self.expired():
            if exited_at is None and self._proc.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None and time.monotonic() - exited_at > _DRAIN_GRACE:
                return
            for fd, _ in poller.poll(100):
                if not captures[fd].read_once():
                    poller.unregister(fd)
                    del captures[fd]

    def _collect(self) -> CallResult:
        # Normally both pipes hit EOF as soon as the process is gone; a leftover child that holds
        # them open gets one shared grace period, then we stop listening.
        deadline = time.monotonic() + _DRAIN_GRACE
        for capture in (self._out, self._err):
            capture.join(max(0.0, deadline - time.monotonic()))
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        stdout, out_cut = self._out.finish()
        stderr, err_cut = self._err.finish()
        return CallResult(
            argv=self.argv,
            exit_code=None if self._timed_out else self._proc.returncode,
            stdout=stdout,
            stderr=stderr,
            started_at=self.started_at,
            ended_at=time.time(),
            timed_out=self._timed_out,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
        )


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux 5.3+); None where there is none
    (the wait then falls back to Popen's own polling)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
