"""`interface-check`: the conformance kit for update interfaces (docs/interface-check.md).

Pure engine code (no Django): the CLI command, the pytest plugin and the tests all call
`check_interface`, which runs the interface through the engine's own runner, parsers, File-API
tree and state machine, so the kit and the orchestrator agree by construction.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from updates.engine.artifact import ArtifactError, read_artifact
from updates.engine.conformance.calls import PathRunner
from updates.engine.conformance.flows import Artifact, Flows
from updates.engine.conformance.model import (
    DEFAULT_SLOW,
    DEFAULT_TIMEOUT,
    CheckResult,
    Report,
    Status,
    Subject,
)
from updates.engine.conformance.queries import check_executable, check_queries
from updates.engine.conformance.rules import RULES, Rule
from updates.engine.errors import InvalidInput

__all__ = [
    "DEFAULT_SLOW",
    "DEFAULT_TIMEOUT",
    "RULES",
    "CheckResult",
    "Report",
    "Rule",
    "Status",
    "Subject",
    "check_interface",
    "load_artifact",
]


def load_artifact(path: Path, subject: Subject) -> Artifact:
    """The verified artifact for the destructive checks; InvalidInput when it cannot be one for
    this interface (a deployment would never select it)."""
    try:
        info = read_artifact(path)
    except (ArtifactError, OSError) as exc:
        raise InvalidInput(f"--artifact {path}: {exc}") from exc
    if info.payload_type != subject.interface:
        raise InvalidInput(
            f"--artifact {path}: payload type {info.payload_type!r} is not the interface {subject.interface!r}"
        )
    if subject.component_type not in info.device_types:
        raise InvalidInput(
            f"--artifact {path}: for device types {', '.join(info.device_types)}, not {subject.component_type!r}"
        )
    return Artifact(Path(path).absolute(), info)


def check_interface(subject: Subject, *, artifact: Path | None = None, destructive: bool = False) -> Report:
    """Run the checks. Without `destructive`, only queries run (safe on a live system);
    with it, `artifact` is installed, committed and rolled back (a bench board or simulator)."""
    if destructive and artifact is None:
        raise InvalidInput("--destructive needs --artifact FILE")
    loaded = load_artifact(artifact, subject) if destructive and artifact is not None else None
    report = Report(subject=subject, destructive=destructive)
    if not check_executable(report):
        return report
    scratch = Path(tempfile.mkdtemp(prefix="interface-check-"))
    try:
        runner = PathRunner(
            subject.path, scratch=scratch, timeout=subject.timeout, kill_grace=subject.kill_grace
        )
        queries = scratch / "queries"
        queries.mkdir()
        answers = check_queries(report, runner, queries)
        if loaded is None:
            return report
        if not answers.ok:
            for rule in (r for r in RULES.values() if r.destructive):
                report.add(rule.id, "flows", "skip", "a query failed: nothing installed")
            return report
        Flows(report, runner, scratch, loaded, answers.stdout).run()
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
