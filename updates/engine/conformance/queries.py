"""The read-only checks: every query asked twice, each answer parsed by the engine's own parsers.

Safe on a live system: only queries run (the protocol says they have no side effects), in an
empty scratch work dir, with the engine's runner (stdin from /dev/null, timeout kills the group).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from updates.engine.conformance.calls import PathRunner
from updates.engine.conformance.model import Report, Subject
from updates.engine.interface import _SAFE_NAME, CallResult, InterfaceError, parse_query_answer
from updates.engine.interface import parse_identity as identity_path_segment
from updates.engine.provides import parse_identity, parse_inventory, parse_provides

# In the order a deployment asks them; each is asked twice (P-IDEMPOTENT-1).
QUERIES = (
    "Identity",
    "Provides",
    "Inventory",
    "SupportsRollback",
    "NeedsArtifactReboot",
    "NeedsUnpackedArtifact",
    "ProvidePayloadFileSizes",
)
YES_NO = ("SupportsRollback", "NeedsArtifactReboot", "NeedsUnpackedArtifact", "ProvidePayloadFileSizes")


def check_executable(report: Report) -> bool:
    """P-EXEC-1; False when nothing else can run."""
    path = report.subject.path
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        report.add("P-EXEC-1", "path", "fail", f"{path}: {exc.strerror}")
        return False
    if not stat.S_ISREG(mode) or not os.access(path, os.X_OK):
        report.add("P-EXEC-1", "path", "fail", f"{path} is not an executable regular file")
        return False
    if not _SAFE_NAME.fullmatch(path.name):
        report.add("P-EXEC-1", "path", "fail", f"{path.name!r} is not a plain file name for interfaces/v1/")
        return False
    report.add("P-EXEC-1", "path", "pass", f"{path} is executable; interface name {path.name!r}")
    return True


class QueryAnswers:
    """The first answer of every query that ran to exit 0, for the destructive part."""

    def __init__(self) -> None:
        self.stdout: dict[str, str] = {}
        self.ok = True

    def answer(self, state: str) -> str | None:
        return self.stdout.get(state)


def check_queries(report: Report, runner: PathRunner, workdir: Path) -> QueryAnswers:
    answers = QueryAnswers()
    for state in QUERIES:
        first, second = (_ask(runner, report.subject, state, workdir) for _ in range(2))
        if not _check_call(report, state, first, second):
            answers.ok = False
            continue
        answers.stdout[state] = first.stdout
        _check_answer(report, state, first.stdout)
        _check_same(report, state, first, second)
    answers.ok = answers.ok and not report.failed
    return answers


def _ask(runner: PathRunner, subject: Subject, state: str, workdir: Path) -> CallResult:
    argv = runner.argv(
        interface=subject.interface,
        state=state,
        workdir=workdir,
        component_type=subject.component_type,
        component_id=None,
        args=subject.args,
    )
    return runner.call(argv, cwd=workdir)


def _check_call(report: Report, state: str, first: CallResult, second: CallResult) -> bool:
    """P-TIMEOUT-1, P-EXIT-1, P-SLOW-1 for both calls; False when the answer cannot be judged."""
    seconds = max(first.duration, second.duration)
    timed_out = [r for r in (first, second) if r.timed_out]
    if timed_out:
        report.add(
            "P-TIMEOUT-1",
            state,
            "fail",
            f"still running after {report.subject.timeout:g} s with stdin closed; killed",
            seconds,
        )
        return False
    report.add(
        "P-TIMEOUT-1", state, "pass", f"answered in {first.duration:.3f} s, {second.duration:.3f} s", seconds
    )
    bad = next((r for r in (first, second) if r.exit_code != 0), None)
    if bad is not None:
        tail = bad.stderr.strip().splitlines()[-1:] if bad.stderr.strip() else []
        report.add(
            "P-EXIT-1", state, "fail", f"exit {bad.exit_code}" + (f": {tail[0]}" if tail else ""), seconds
        )
        return False
    report.add("P-EXIT-1", state, "pass", "exit 0", seconds)
    if seconds > report.subject.slow:
        report.add(
            "P-SLOW-1", state, "warn", f"took {seconds:.2f} s (more than {report.subject.slow:g} s)", seconds
        )
    return True


def _check_same(report: Report, state: str, first: CallResult, second: CallResult) -> None:
    if first.stdout == second.stdout:
        report.add("P-IDEMPOTENT-1", state, "pass", "the same answer twice")
    else:
        report.add(
            "P-IDEMPOTENT-1", state, "fail", f"first {_short(first.stdout)}, then {_short(second.stdout)}"
        )


def _check_answer(report: Report, state: str, stdout: str) -> None:
    checks: dict[str, Callable[[Report, str], None]] = {
        "Identity": _identity,
        "Provides": _provides,
        "Inventory": _inventory,
    }
    if state in checks:
        checks[state](report, stdout)
        return
    try:
        word = parse_query_answer(state, stdout, interface=report.subject.interface)
    except InterfaceError:
        allowed = "Yes, No, Automatic" if state == "NeedsArtifactReboot" else "Yes, No"
        report.add(
            "P-ANSWER-1", state, "fail", f"answered {_short(stdout)}; allowed: one line {allowed}, or nothing"
        )
        return
    default = " (nothing printed: the default)" if not stdout.strip() else ""
    report.add("P-ANSWER-1", state, "pass", f"{word}{default}")


def _identity(report: Report, stdout: str) -> None:
    try:
        value = parse_identity(stdout, source="the answer")
        identity_path_segment(stdout, interface=report.subject.interface)
    except InterfaceError as exc:
        report.add("P-IDENTITY-1", "Identity", "fail", _reason(exc, stdout))
        return
    report.add("P-IDENTITY-1", "Identity", "pass", f"id={value}")
    expected = report.subject.component_id
    if expected is None:
        return
    if value == expected:
        report.add("P-IDENTITY-2", "Identity", "pass", f"id={value} as expected")
    else:
        report.add("P-IDENTITY-2", "Identity", "fail", f"id={value}, expected id={expected}")


def _provides(report: Report, stdout: str) -> None:
    interface = report.subject.interface
    try:
        provides = parse_provides(stdout, source="the answer", allow_device_type=True)
    except InterfaceError as exc:
        report.add("P-PROVIDES-1", "Provides", "fail", str(exc))
        for rule in ("P-PROVIDES-2", "P-PROVIDES-3"):
            report.add(rule, "Provides", "skip", "Provides does not parse (P-PROVIDES-1)")
        return
    report.add("P-PROVIDES-1", "Provides", "pass", f"{len(provides)} keys")
    try:
        parse_provides(stdout, source="the answer", interface=interface, allow_device_type=True)
    except InterfaceError as exc:
        report.add("P-PROVIDES-2", "Provides", "fail", str(exc))
    else:
        key = next(k for k in provides if k in (f"rootfs-image.{interface}.version", "rootfs-image.version"))
        report.add("P-PROVIDES-2", "Provides", "pass", f"{key}={provides[key]}")
    if "device_type" in provides:
        report.add("P-PROVIDES-3", "Provides", "fail", f"device_type={provides['device_type']}")
    else:
        report.add("P-PROVIDES-3", "Provides", "pass", "no device_type")
    spaced = [k for k, v in provides.items() if re.search(r"\s", v)]
    if spaced:
        report.add("P-PROVIDES-4", "Provides", "warn", f"values with spaces: {', '.join(spaced)}")


def _inventory(report: Report, stdout: str) -> None:
    try:
        inventory = parse_inventory(stdout, source="the answer")
    except InterfaceError as exc:
        report.add("P-INVENTORY-1", "Inventory", "fail", str(exc))
        return
    lists = [k for k, v in inventory.items() if len(v) > 1]
    extra = f" ({', '.join(lists)} as lists)" if lists else ""
    report.add("P-INVENTORY-1", "Inventory", "pass", f"{len(inventory)} keys{extra}")


def _reason(exc: Exception, stdout: str) -> str:
    return f"{exc}" if "answered" in str(exc) else f"{exc}; got {_short(stdout)}"


def _short(stdout: str, limit: int = 80) -> str:
    text = repr(stdout)
    return text if len(text) <= limit else text[: limit - 3] + "..."
