"""Keep a command running: `python -m worker.supervise [options] -- COMMAND [ARG...]`.

`bin/run` starts the Celery worker under it, so a worker that dies (a bad message, a lost broker,
the OOM killer) is started again; the worker-start recovery then picks up what it left. Each
start, exit and restart is logged with the exit status. Restarts wait with exponential back-off
(`--backoff`, doubled per quick exit, capped at `--max-backoff`); a run that lasted `--stable`
seconds starts the back-off over. SIGTERM and SIGINT are passed to the command (a Celery worker
then finishes its task: a warm shutdown), and the supervisor exits when the command has.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("orchestrator.supervise")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(self, command: list[str], *, backoff: float, max_backoff: float, stable: float) -> None:
        self.command, self.backoff, self.max_backoff, self.stable = command, backoff, max_backoff, stable
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal: int | None = None

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        delay = self.backoff
        while True:
            started = time.monotonic()
            # Its own process group: a terminal's Ctrl-C reaches only us, and we pass it on once.
            try:
                self.child = subprocess.Popen(self.command, process_group=0)
            except OSError as exc:  # no such program: restarting will not help
                log.error("cannot start %s: %s", self.command[0], exc)
                return 127
            log.info("started pid %d: %s", self.child.pid, " ".join(self.command))
            if self.stop_signal is not None:  # asked to stop while it was starting
                self.child.send_signal(self.stop_signal)
            code = self.child.wait()
            ran = time.monotonic() - started
            if self.stop_signal is not None:
                log.info("pid %d %s after %.1f s; stopped", self.child.pid, _status(code), ran)
                return 0 if code in (0, -self.stop_signal) else _exit_status(code)
            delay = self.backoff if ran >= self.stable else delay
            log.warning(
                "pid %d %s after %.1f s; restarting in %g s", self.child.pid, _status(code), ran, delay
            )
            if self._sleep(delay):
                log.info("stopped")
                return 0
            delay = min(delay * 2, self.max_backoff)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum
        if self.child is not None and self.child.poll() is None:
            log.info("%s: passed to pid %d", signal.Signals(signum).name, self.child.pid)
            self.child.send_signal(signum)

    def _sleep(self, seconds: float) -> bool:
        """Wait before a restart; True when a stop signal came meanwhile."""
        deadline = time.monotonic() + seconds
        while self.stop_signal is None and time.monotonic() < deadline:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        return self.stop_signal is not None


def _status(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code  # the shell's convention for a signal


def _write_pidfile(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


def _remove_pidfile(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):  # not one a newer supervisor wrote
            path.unlink()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.supervise", description=__doc__.splitlines()[0])
    parser.add_argument("--pidfile", type=Path, help="write the supervisor's pid here")
    parser.add_argument("--backoff", type=float, default=1.0, help="first wait before a restart, s")
    parser.add_argument("--max-backoff", type=float, default=60.0, help="longest wait before a restart, s")
    parser.add_argument("--stable", type=float, default=60.0, help="a run this long resets the back-off, s")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run (after --)")
    # The appliance's text line (orchestrator_site/logs.py; its worker child writes the same file):
    # one time format, UTC with milliseconds. Own code: the supervisor loads neither Django nor the
    # floors above it.
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if args.pidfile:
        _write_pidfile(args.pidfile)
    try:
        supervisor = Supervisor(
            command, backoff=args.backoff, max_backoff=args.max_backoff, stable=args.stable
        )
        return supervisor.run()
    finally:
        if args.pidfile:
            _remove_pidfile(args.pidfile)


if __name__ == "__main__":
    sys.exit(main())
