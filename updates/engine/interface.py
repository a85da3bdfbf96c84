"""Run update interfaces (v1 protocol) safely: lookup, argv, clean env, timeout, bounded capture.

An interface is an executable we do not trust to behave: it may hang, spawn children that outlive
it, or print megabytes. So every call runs in its own session (a timeout kills the whole group),
with an argv list (never a shell), a clean environment, stdin from /dev/null, and readers that
keep only a bounded part of stdout/stderr while always draining the pipes.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from updates.engine.sessions import record_session

if TYPE_CHECKING:
    from updates.engine.workdir import DownloadOutcome, PayloadSource

from updates.engine.errors import UnavailableError

QUERY_STATES = (
    "Identity",
    "Provides",
    "Inventory",
    "NeedsUnpackedArtifact",
    "ProvidePayloadFileSizes",
    "NeedsArtifactReboot",
    "SupportsRollback",
)

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPTURE_LIMIT = 64 * 1024
DEFAULT_TIMEOUT = 14400.0
DEFAULT_KILL_GRACE = 5.0
# After the interface exits, a child it left behind may still hold our pipes open; we stop
# capturing after this long instead of waiting for that child forever.
_DRAIN_GRACE = 1.0

# A plain file name: no '/', no leading '.', so no '..' either; ASCII only.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}")

_YES_NO_DEFAULTS: dict[str, str] = {
    "NeedsUnpackedArtifact": "Yes",
    "ProvidePayloadFileSizes": "No",
    "NeedsArtifactReboot": "No",
    "SupportsRollback": "No",
}


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
            try:
                self._proc.wait(self.remaining())
            except subprocess.TimeoutExpired:
                self._timed_out = True
                self.kill()
            self._result = self._collect()
        return self._result

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


class InterfaceRunner:
    """Finds and runs interfaces under ``<data_dir>/interfaces/v1`` (or the seed ``update-interfaces/v1``)."""

    def __init__(
        self,
        *,
        data_dir: Path,
        timeout: float = DEFAULT_TIMEOUT,
        extra_env: Mapping[str, str] | None = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        session_log: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.extra_env = dict(extra_env or {})
        self.session_log = session_log

    def with_session_log(self, path: Path) -> InterfaceRunner:
        """The same runner, recording the session of every call it starts in `path`
        (`updates.engine.sessions`), so a dead runner's leftovers can be found."""
        return InterfaceRunner(
            data_dir=self.data_dir,
            timeout=self.timeout,
            extra_env=self.extra_env,
            kill_grace=self.kill_grace,
            session_log=path,
        )

    def search_paths(self, interface: str) -> list[Path]:
        return [
            self.data_dir / "interfaces" / "v1" / interface,
            self.data_dir / "update-interfaces" / "v1" / interface,
        ]

    def resolve(self, interface: str) -> Path:
        """The executable for ``interface``. The first path that exists wins; if it is not an
        executable regular file that is an error (we never fall back to another implementation)."""
        if not _SAFE_NAME.fullmatch(interface):
            raise InterfaceNotFound(f"update interface name {interface!r} is not a plain safe file name")
        candidates = self.search_paths(interface)
        searched = ", ".join(str(p) for p in candidates)
        for path in candidates:
            if not os.path.lexists(path):
                continue
            if not _is_executable_file(path):
                raise InterfaceNotFound(
                    f"update interface {interface!r}: {path} is not an executable regular file "
                    f"(searched: {searched})"
                )
            return path
        raise InterfaceNotFound(f"update interface {interface!r} not found (searched: {searched})")

    def argv(
        self,
        *,
        interface: str,
        state: str,
        workdir: Path,
        component_type: str,
        component_id: str | None,
        args: Sequence[str],
    ) -> list[str]:
        """Seed form passes the component id after the type; the current Mender form does not."""
        ident = [] if component_id is None else [component_id]
        path = self.resolve(interface)
        return [str(path), state, str(Path(workdir).absolute()), component_type, *ident, *args]

    def env(self) -> dict[str, str]:
        return {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", **self.extra_env}

    def start(self, argv: Sequence[str], *, cwd: Path, threaded: bool = True) -> RunningCall:
        argv_t = tuple(argv)
        try:
            proc = subprocess.Popen(
                list(argv_t),
                cwd=cwd,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            raise InterfaceError(f"cannot run {argv_t[0] if argv_t else '<empty argv>'}: {exc}") from exc
        if self.session_log is not None:
            with contextlib.suppress(OSError):  # the work dir's own problems surface elsewhere
                record_session(self.session_log, proc.pid)
        return RunningCall(proc, argv_t, timeout=self.timeout, kill_grace=self.kill_grace, threaded=threaded)

    def call(self, argv: Sequence[str], *, cwd: Path) -> CallResult:
        return self.start(argv, cwd=cwd, threaded=False).wait()

    def download(
        self, argv: Sequence[str], *, tree: Path, payloads: Iterable[PayloadSource], with_sizes: bool
    ) -> DownloadOutcome:
        """`Download` with the payloads served through the File-API FIFOs (`run_download`)."""
        from updates.engine.workdir import run_download  # workdir drives RunningCall: a cycle

        return run_download(self, argv, tree=tree, payloads=payloads, with_sizes=with_sizes)


def _is_executable_file(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and os.access(path, os.X_OK)


def parse_query_answer(state: str, stdout: str, *, interface: str) -> str:
    """The answer of a Yes/No query (plus ``Automatic`` for NeedsArtifactReboot); empty → default."""
    if state not in _YES_NO_DEFAULTS:
        raise ValueError(f"{state!r} is not a Yes/No query (Identity: use parse_identity)")
    lines = [line.strip() for line in stdout.strip().splitlines() if line.strip()]
    if not lines:
        return _YES_NO_DEFAULTS[state]
    allowed = ("Yes", "No", "Automatic") if state == "NeedsArtifactReboot" else ("Yes", "No")
    if len(lines) > 1 or lines[0] not in allowed:
        raise ProtocolError(
            f"update interface {interface!r} answered {state} with {stdout!r}; "
            f"expected one line: {', '.join(allowed)}"
        )
    return lines[0]


def parse_identity(stdout: str, *, interface: str) -> str:
    """The component id from an ``Identity`` answer: exactly one line ``id=<value>``.
    The id becomes part of work-dir paths, so it must be a safe single path segment."""
    lines = [line.strip() for line in stdout.strip().splitlines() if line.strip()]
    value = lines[0][3:] if len(lines) == 1 and lines[0].startswith("id=") else ""
    if not value or value in (".", "..") or re.search(r"[\s/\\\x00]", value):
        raise ProtocolError(
            f"update interface {interface!r} answered Identity with {stdout!r}; expected one line id=<value>"
        )
    return value
