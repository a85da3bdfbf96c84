"""The destructive checks: whole deployments of one artifact, run by the engine's state machine.

For a bench board or a simulator only: they install and roll back for real. Each flow is the
orchestrator's own `Machine` over a one-component plan, in a scratch work root, so the File-API
tree, the Download streams (or files tree) and the order of states are exactly a deployment's.
A host reboot (`NeedsArtifactReboot: Automatic`) is not done: the verify state runs as after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from updates.engine.artifact import ArtifactInfo
from updates.engine.conformance.calls import DOWNLOAD_STATES, Call, PathRunner, Recorder
from updates.engine.conformance.model import Report
from updates.engine.inspection import NullJournal
from updates.engine.interface import InterfaceError, parse_query_answer
from updates.engine.machine import Machine, Options, Result, current_files, header_files
from updates.engine.manifest import Component
from updates.engine.planner import Plan, Target, component_key, describe_version
from updates.engine.provides import parse_identity, parse_provides
from updates.engine.workdir import prepare_tree, remove_tree

UNKNOWN_STATE = "InterfaceCheckUnknownState"
_INSTALL_STATES = ("ArtifactInstall", "ArtifactReboot", "ArtifactVerifyReboot", "ArtifactCommit")
_ROLLBACK_STATES = (
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "ArtifactVerifyRollbackReboot",
    "ArtifactFailure",
)


@dataclass(frozen=True)
class Artifact:
    path: Path
    info: ArtifactInfo


class Flows:
    def __init__(
        self, report: Report, runner: PathRunner, scratch: Path, artifact: Artifact, answers: dict[str, str]
    ) -> None:
        self.report = report
        self.runner = runner
        self.scratch = scratch
        self.artifact = artifact
        self.subject = report.subject
        self.component_id = parse_identity(answers["Identity"], source="Identity")
        self.supports_rollback = parse_query_answer(
            "SupportsRollback", answers["SupportsRollback"], interface=self.subject.interface
        )
        self.new = describe_version(artifact.info.all_provides(), self.subject.interface)
        self.runs = 0

    # ----- the sequence ---------------------------------------------------------------------

    def run(self) -> None:
        # Rollbacks first, while the component still runs its old version (after the commit
        # the old and the new version would be the same). Each flow runs only on a component
        # the flows before left in order, so a broken rule is reported by its own check only.
        self._unknown_state()
        steps: tuple[Callable[[], bool], ...] = (
            lambda: self._rollback_flow(crash=False),
            lambda: self._rollback_flow(crash=True),
            lambda: self._commit_flow(crash=False),
            self._cleanup_twice,
            lambda: self._commit_flow(crash=True),
        )
        for step in steps:
            if not step():
                self._skip_unchecked()
                return

    def _skip_unchecked(self) -> None:
        checked = {r.rule for r in self.report.results}
        for rule in ("P-ROLLBACK-1", "P-COMMIT-1", "P-CLEANUP-1", "P-RERUN-1"):
            if rule not in checked:
                self.report.add(rule, "flows", "skip", "not run: an earlier flow failed")

    # ----- flows ----------------------------------------------------------------------------

    def _rollback_flow(self, *, crash: bool) -> bool:
        rule = "P-RERUN-1" if crash else "P-ROLLBACK-1"
        if self.supports_rollback != "Yes":
            if not crash:
                self.report.add(rule, "rollback", "warn", "SupportsRollback answers No: rollback not checked")
            return True
        old, current = self._provides()
        recorder = Recorder(self.runner, crash=crash, kill_after=self.subject.kill_after)
        result = self._machine(recorder, current, rollback=True)
        label = "install, power cuts, roll back" if crash else "install, roll back"
        return self._judge(recorder.calls, result, "rolled_back", old, rule, label)

    def _commit_flow(self, *, crash: bool) -> bool:
        rule = "P-RERUN-1" if crash else "P-COMMIT-1"
        old, current = self._provides()
        if old == self.new and not crash:
            self.report.add(
                rule, "commit", "warn", f"the component already runs {self.new}: the check proves little"
            )
        recorder = Recorder(self.runner, crash=crash, kill_after=self.subject.kill_after)
        result = self._machine(recorder, current, rollback=False)
        label = "install, power cuts, commit" if crash else "install, commit"
        return self._judge(recorder.calls, result, "succeeded", self.new, rule, label)

    def _cleanup_twice(self) -> bool:
        """The commit flow ran Cleanup once; a power cut may bring the tree back: once more."""
        tree = self.scratch / "cleanup-again"
        target = self._target(self._provides()[1])
        prepare_tree(tree, header=header_files(target), current=current_files(target))
        recorder = Recorder(self.runner)
        recorder.call(self._argv("Cleanup", tree), cwd=tree)
        remove_tree(tree)
        call = recorder.calls[0]
        if not call.ok:
            self.report.add("P-CLEANUP-1", "Cleanup", "fail", f"second run: {call.describe()}", call.seconds)
            return False
        after, _ = self._provides()
        if after != self.new:
            self.report.add("P-CLEANUP-1", "Cleanup", "fail", f"Provides went from {self.new} to {after}")
            return False
        self.report.add("P-CLEANUP-1", "Cleanup", "pass", f"exit 0 twice; still {after}", call.seconds)
        return True

    def _unknown_state(self) -> None:
        tree = self.scratch / "unknown-state"
        tree.mkdir()
        result = self.runner.call(self._argv(UNKNOWN_STATE, tree), cwd=tree)
        if result.timed_out or result.exit_code != 0 or result.stdout.strip():
            seen = Call(UNKNOWN_STATE, "", result).describe()
            if result.stdout.strip():
                seen += f"; printed {result.stdout.strip()[:60]!r}"
            self.report.add("P-UNKNOWN-1", UNKNOWN_STATE, "fail", seen, result.duration)
        else:
            self.report.add("P-UNKNOWN-1", UNKNOWN_STATE, "pass", "exit 0, nothing printed", result.duration)

    # ----- judging a flow -------------------------------------------------------------------

    def _judge(
        self, calls: list[Call], result: Result, outcome: str, version: str, rule: str, label: str
    ) -> bool:
        seconds = sum(c.seconds for c in calls)
        summary = f"{len(calls)} calls, {seconds:.2f} s" + _slowest(calls)
        failed = next((c for c in calls if not c.ok and "killed at its start" not in c.note), None)
        if failed is not None:
            self.report.add(
                self._blame(failed, rule), failed.state, "fail", f"{label}: {failed.describe()}", seconds
            )
            return False
        if result.outcome != outcome:
            self.report.add(rule, "flow", "fail", f"{label}: {result.outcome}: {result.reason}", seconds)
            return False
        self._download_seen(calls)
        after, _ = self._provides()
        if after != version:
            self.report.add(
                rule, "Provides", "fail", f"{label}: Provides reports {after}, expected {version}"
            )
            return False
        if rule != "P-RERUN-1":
            states = [c.state for c in calls if c.state in _INSTALL_STATES]
            self.report.add("P-INSTALL-1", "flow", "pass", f"{label}: {', '.join(states)} exit 0", seconds)
        self.report.add(rule, "flow", "pass", f"{label}: Provides reports {after}; {summary}", seconds)
        return True

    def _blame(self, call: Call, rule: str) -> str:
        """The rule a failed call breaks: in the power-cut flows always P-RERUN-1."""
        if call.result is not None and call.result.timed_out:
            return "P-TIMEOUT-1"
        if rule == "P-RERUN-1":
            return rule
        if call.state in DOWNLOAD_STATES:
            return "P-DOWNLOAD-1"
        if call.state in _ROLLBACK_STATES:
            return "P-ROLLBACK-1"
        if call.state == "Cleanup":
            return "P-CLEANUP-1"
        if call.state in _INSTALL_STATES:
            return "P-INSTALL-1"
        return "P-EXIT-1"

    def _download_seen(self, calls: list[Call]) -> None:
        if any(r.rule == "P-DOWNLOAD-1" for r in self.report.results):
            return
        call = next((c for c in calls if c.state in DOWNLOAD_STATES), None)
        if call is not None:
            sizes = " with payload sizes" if call.state == "DownloadWithFileSizes" else ""
            self.report.add("P-DOWNLOAD-1", call.state, "pass", f"{call.tree} tree{sizes}", call.seconds)

    # ----- plumbing -------------------------------------------------------------------------

    def _machine(self, recorder: Recorder, current: dict[str, str], *, rollback: bool) -> Result:
        self.runs += 1
        target = self._target(current)
        plan = Plan(targets=(target,), groups=((0, (target.key,)),))
        options = Options(
            work_root=self.scratch / f"work-{self.runs}",
            stop_before=frozenset({"ArtifactCommit"}) if rollback else frozenset(),
            reboot_command=("true",),
            reboot_wait_seconds=0.0,
        )
        machine = Machine(plan=plan, runner=recorder, journal=NullJournal(), options=options)
        result = machine.run()
        if not rollback or result.outcome != "stopped":
            return result
        # The operator's `rollback` after the stop: a new machine on the persisted position.
        options = Options(work_root=options.work_root, reboot_command=("true",), reboot_wait_seconds=0.0)
        machine = Machine(
            plan=plan, runner=recorder, journal=NullJournal(), options=options, state=machine.state
        )
        machine.request_rollback("interface-check: roll back after install")
        return machine.run()

    def _target(self, current: dict[str, str]) -> Target:
        component = Component(self.subject.component_type, self.subject.interface, self.subject.args, None)
        return Target(
            key=component_key(self.subject.component_type, self.component_id),
            component=component,
            component_id=self.component_id,
            order=0,
            current=current,
            action="install",
            artifact_path=self.artifact.path,
            artifact=self.artifact.info,
        )

    def _argv(self, state: str, tree: Path) -> list[str]:
        return self.runner.argv(
            interface=self.subject.interface,
            state=state,
            workdir=tree,
            component_type=self.subject.component_type,
            component_id=None,
            args=self.subject.args,
        )

    def _provides(self) -> tuple[str, dict[str, str]]:
        """The version the component reports now, and its whole Provides."""
        tree = self.scratch / "queries"
        tree.mkdir(exist_ok=True)
        result = self.runner.call(self._argv("Provides", tree), cwd=tree)
        try:
            provides = parse_provides(
                result.stdout, source="Provides", interface=self.subject.interface, allow_device_type=True
            )
        except InterfaceError as exc:
            return f"<no version: {exc}>", {}
        if not result.ok:
            return f"<no version: Provides {Call('Provides', '', result).describe()}>", provides
        return describe_version(provides, self.subject.interface), provides


def _slowest(calls: list[Call]) -> str:
    if not calls:
        return ""
    slowest = max(calls, key=lambda c: c.seconds)
    return f", slowest {slowest.state} {slowest.seconds:.3f} s"
