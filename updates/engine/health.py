"""The system health window (docs/policy.md): after every component verified its reboot and
before the first ArtifactCommit, the policy's checks run every `interval` until `window` has
passed; the first that fails (non-zero exit or timeout) ends the window with a reason.

Each check runs as an interface call does (argv, never a shell; a clean environment; its own
session, killed on timeout) and is reported to the `Journal` like one, so the timeline and the
audit journal show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from updates.engine.calls import CallResult, InterfaceError
from updates.engine.interface import InterfaceRunner
from updates.engine.machine import Journal
from updates.engine.policy import Health, HealthCheck

HEALTH_COMPONENT = "system"  # the step rows of the checks name the system, not one component
HEALTH_STATE = "HealthCheck"
OUTPUT_IN_REASON = 2000  # characters of a failed check's output kept in the deployment's reason


def health_window(
    health: Health,
    *,
    journal: Journal,
    data_dir: Path,
    cwd: Path,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Run the window; None when every check passed every time, else why the system is rolled back."""
    start = clock()
    run = 0
    while True:
        run += 1
        for check in health.checks:
            error = _run_check(check, run, journal=journal, data_dir=data_dir, cwd=cwd)
            if error:
                return error
        next_run = start + run * health.interval
        if next_run - start > health.window:
            return None
        sleep(max(0.0, next_run - clock()))


def _run_check(check: HealthCheck, run: int, *, journal: Journal, data_dir: Path, cwd: Path) -> str | None:
    argv = check.argv()
    step = journal.call_started(component=HEALTH_COMPONENT, state=HEALTH_STATE, argv=argv)
    runner = InterfaceRunner(data_dir=data_dir, timeout=check.timeout, kill_grace=1.0)
    try:
        result = runner.call(argv, cwd=cwd)
    except InterfaceError as exc:  # it could not even start
        journal.call_finished(step, result=None, error=str(exc))
        return f"health check {check.name} failed on run {run} of the window: {exc}"
    journal.call_finished(step, result=result, answer=check.name)
    return None if result.ok else _failure(check, run, result)


def _failure(check: HealthCheck, run: int, result: CallResult) -> str:
    how = f"timed out after {check.timeout:g}s" if result.timed_out else f"exited with {result.exit_code}"
    output = (result.stdout + result.stderr).strip()
    if len(output) > OUTPUT_IN_REASON:
        output = "…" + output[-OUTPUT_IN_REASON:]
    said = f"; its output:\n{output}" if output else " (no output)"
    return f"health check {check.name} failed on run {run} of the window ({how}){said}"
