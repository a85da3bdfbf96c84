"""The system-wide install/rollback state machine.

It drives every installing component's interface through the Mender states, order group by
order group (parallel inside a group, a barrier per state), commits only when every group
installed, and otherwise rolls every touched component back, newest group first.

The machine knows nothing of Django: it reports through a `Journal`, which persists the
run position (`RunState`) before every state so a later `resume` can continue from it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from updates.engine.artifact import ArtifactError, ArtifactReader, PublicKey
from updates.engine.errors import CleanupStarted
from updates.engine.interface import CallResult, InterfaceError, parse_query_answer
from updates.engine.planner import Plan, Target
from updates.engine.sessions import SESSION_LOG
from updates.engine.streaming import StreamOpener, is_stream_ref, streamed_payloads
from updates.engine.threads import map_in_context
from updates.engine.workdir import (
    CurrentFiles,
    DownloadError,
    DownloadOutcome,
    HeaderFiles,
    PayloadSource,
    prepare_tree,
    remove_tree,
)

T = TypeVar("T")

STOPPABLE = ("ArtifactCommit", "ArtifactRollback", "Cleanup")
INTERRUPTIBLE_BY_CRASH = (
    "Download",
    "ArtifactInstall",
    "ArtifactReboot",
    "ArtifactVerifyReboot",
    "ArtifactCommit",
)
MAX_CRASHES_IN_ONE_PLACE = 3
VERIFY_ROLLBACK_REBOOT_TRIES = 3
Phase = Literal["install", "commit", "rollback", "cleanup", "done"]
Outcome = Literal["succeeded", "rolled_back", "inconsistent", "stopped", "reboot_required"]


@dataclass
class Progress:
    """What happened to one component so far; persisted with the run position."""

    entered: bool = False
    downloaded: bool = False
    install_started: bool = False
    reboot: str = "No"
    reboot_ran: bool = False
    committed: bool = False
    supports_rollback: str | None = None
    rollback_ran: bool = False
    rollback_ok: bool = False
    rollback_reboot_ran: bool = False
    failure_ran: bool = False
    cleaned: bool = False
    error: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Progress:
        """From a persisted run position; keys a newer or older version wrote are left out, so a
        read of an old deployment never fails on them."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def milestones_reached(self) -> int:
        """How many of `MILESTONES` this component reached (a progress bar's share)."""
        return sum(bool(getattr(self, m)) for m in MILESTONES)

    def outcome(
        self, *, current: str, target: str, run: RunPhase, failed_in: str | None = None
    ) -> ComponentOutcome:
        """What happened to this installing component, in the words `history`, the API and the
        pages show, and the version it runs by these records. `run`: whether the deployment is
        still in progress, has succeeded, or ended otherwise; `failed_in`: the first update
        state that failed for it (from the step journal), if any."""
        failure = f"failed in {failed_in}, " if failed_in else ""
        in_progress = run == "in_progress"
        if not self.install_started:
            if in_progress:
                return ComponentOutcome(
                    "downloaded, not installed yet" if self.downloaded else "not started yet", current
                )
            return ComponentOutcome(f"{failure}not installed", current)
        if self.rollback_ran or self.rollback_ok:
            if self.rollback_ok:
                return ComponentOutcome(f"{failure}rolled back", current)
            return ComponentOutcome(f"{failure}rollback FAILED", UNKNOWN_VERSION)
        if run == "succeeded" or (self.committed and not in_progress):
            return ComponentOutcome("installed", target)
        if in_progress:
            if self.committed:
                return ComponentOutcome("committed", target)
            return ComponentOutcome(f"{failure}installed, not committed", target, uncommitted=True)
        return ComponentOutcome(f"{failure}NOT rolled back", UNKNOWN_VERSION)


# What the run position records per installing component, in the order it happens.
MILESTONES = ("entered", "downloaded", "install_started", "committed", "cleaned")
# How far a deployment got, as `Progress.outcome` needs it (the database's statuses map onto it).
RunPhase = Literal["in_progress", "succeeded", "ended"]
UNKNOWN_VERSION = "unknown"  # a failed or missing rollback: nobody knows what the component runs


@dataclass(frozen=True)
class ComponentOutcome:
    """One component's outcome: `what` happened, the `version` it runs, and whether that
    version is installed but not committed yet."""

    what: str
    version: str
    uncommitted: bool = False


@dataclass
class RunState:
    """The persisted position of a deployment: enough to resume after a crash."""

    phase: Phase = "install"
    group: int = 0
    step: str = ""
    failed: bool = False
    reason: str = ""
    host_reboot_pending: bool = False
    crashes: dict[str, int] = field(default_factory=dict)
    given_up: str = ""
    progress: dict[str, Progress] = field(default_factory=dict)
    # docs/policy.md: the approval gate the run waits at ("" when none), and the gates (and the
    # health window, "health") already passed, so a resume neither asks twice nor skips one.
    gate: str = ""
    passed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # vars() instead of dataclasses.asdict: this runs before every state, and asdict's
        # deep copy was a measurable share of the orchestration overhead.
        data = dict(vars(self))
        data["crashes"] = dict(self.crashes)
        data["passed"] = list(self.passed)
        data["progress"] = {key: dict(vars(p)) for key, p in self.progress.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        progress = {k: Progress(**v) for k, v in data.get("progress", {}).items()}
        return cls(**{**data, "progress": progress})


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str
    components: tuple[str, ...] = ()


class Runner(Protocol):
    """How the machine runs interfaces: `InterfaceRunner`, or an in-process fake in tests."""

    def argv(
        self,
        *,
        interface: str,
        state: str,
        workdir: Path,
        component_type: str,
        component_id: str | None,
        args: Sequence[str],
    ) -> list[str]: ...

    def call(self, argv: Sequence[str], *, cwd: Path) -> CallResult: ...

    def download(
        self, argv: Sequence[str], *, tree: Path, payloads: Iterable[PayloadSource], with_sizes: bool
    ) -> DownloadOutcome: ...

    def with_session_log(self, path: Path) -> Runner: ...


class Watch(Protocol):
    """What the policy adds to a run (docs/policy.md): a person's decision at a gate, and the
    system health window before the first commit. Each returns a reason to roll back, or None."""

    def gate(self, before: str) -> str | None: ...

    def health(self) -> str | None: ...


class Journal(Protocol):
    """Where the machine reports; the Django side writes step rows and the run position."""

    def checkpoint(self, state: RunState) -> None: ...

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int: ...

    def call_finished(
        self, step: int, *, result: CallResult | None, answer: str | None = None, error: str | None = None
    ) -> None: ...


@dataclass(frozen=True)
class Options:
    work_root: Path
    keys: Sequence[PublicKey] = ()
    stop_before: frozenset[str] = frozenset()
    exit_on_reboot: bool = False
    reboot_command: Sequence[str] = ("reboot",)
    # A real `reboot` returns before the host goes down: wait to be killed, as Mender's client
    # does, so the shutdown lands while the reboot is still marked pending (resume then verifies
    # the reboot instead of treating the kill as a crash in ArtifactVerifyReboot).
    reboot_wait_seconds: float = 600.0
    # Where artifacts planned as streamed from the artifact server are read at Download.
    streams: StreamOpener | None = None
    # docs/policy.md: the states a person approves before (the `Watch` asks), and whether a
    # health window runs before the first ArtifactCommit.
    gates: frozenset[str] = frozenset()
    health_window: bool = False


class StopRun(Exception):
    """Raised inside the loop to stop cleanly (`--stop-before`, `--exit-on-reboot`)."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome: Outcome = outcome


class Machine:
    def __init__(
        self,
        *,
        plan: Plan,
        runner: Runner,
        journal: Journal,
        options: Options,
        state: RunState | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.plan = plan
        self.watch = watch
        # Every call's session goes into the work dir's log: a later takeover finds the calls'
        # leftovers by it, even those that left the work dir (`updates.engine.sessions`).
        self.runner = runner.with_session_log(options.work_root / SESSION_LOG)
        self.journal = journal
        self.options = options
        self.targets = {t.key: t for t in plan.installing()}
        self.groups = [keys for _, keys in _install_groups(plan)]
        self.state = state or RunState(progress={k: Progress() for k in self.targets})
        widest = max((len(keys) for keys in self.groups), default=1)
        self.pool = ThreadPoolExecutor(max_workers=widest, thread_name_prefix="component")

    # ----- the top-level loop -------------------------------------------------------------

    def run(self) -> Result:
        try:
            while self.state.phase != "done":
                self._run_phase()
        except StopRun as stop:
            self.journal.checkpoint(self.state)
            return Result(stop.outcome, str(stop))
        finally:
            self.pool.shutdown()
        return self._result()

    def _run_phase(self) -> None:
        phases: dict[Phase, Callable[[], None]] = {
            "install": self._install_phase,
            "commit": self._commit_phase,
            "rollback": self._rollback_phase,
            "cleanup": self._cleanup_phase,
        }
        phases[self.state.phase]()

    def _enter(self, phase: Phase, group: int = 0) -> None:
        self.state.phase, self.state.group, self.state.step = phase, group, ""
        self.journal.checkpoint(self.state)

    def _fail(self, reason: str) -> None:
        if not self.state.failed:
            self.state.failed, self.state.reason = True, reason
        self._enter("rollback", self._highest_touched_group())

    def recover_after_crash(self) -> None:
        """The process running this deployment died; apply the update-module resume rules.

        A planned host reboot continues at the verify state; a Download whose group streams every
        artifact from the server runs again (docs/reliability.md); a stop in Download, Install,
        Reboot, VerifyReboot or Commit takes the rollback path; the rollback path and Cleanup
        are continued. A position that keeps dying is given up (`inconsistent`).
        """
        where = f"{self.state.phase}/{self.state.group}/{self.state.step}"
        self.state.crashes[where] = self.state.crashes.get(where, 0) + 1
        if self.state.crashes[where] > MAX_CRASHES_IN_ONE_PLACE:
            self.state.given_up = f"the deployment died {MAX_CRASHES_IN_ONE_PLACE + 1} times at {where}"
            self.state.failed = True
            self.state.reason = self.state.reason or self.state.given_up
            self.state.phase = "done"
            return
        if self.state.host_reboot_pending or self.state.step.startswith("stopped-before-"):
            return
        if self.state.gate:  # it died waiting for a person: wait again (the expiry is kept)
            return
        if self._streamed_download_interrupted():
            return  # Download again: nothing was activated, and nothing was stored to resume from
        if self.state.phase in ("install", "commit") and self.state.step in INTERRUPTIBLE_BY_CRASH:
            self._fail(f"interrupted during {self.state.step} (the process stopped unexpectedly)")

    def _streamed_download_interrupted(self) -> bool:
        """A crash during a Download whose group streams every artifact from the server: the
        bytes that were streamed are gone, and Download activates nothing, so it runs again."""
        if self.state.phase != "install" or self.state.step != "Download":
            return False
        keys = self.groups[self.state.group] if self.state.group < len(self.groups) else []
        return bool(keys) and all(is_stream_ref(self.targets[k].artifact_path) for k in keys)

    def request_rollback(self, reason: str) -> None:
        """Operator's `rollback`: too late once cleanup started (the update is then final)."""
        if self.state.phase in ("cleanup", "done"):
            raise CleanupStarted("cleanup has started: the deployment can no longer be rolled back")
        if self.state.phase != "rollback":
            self.state.gate = ""  # no longer waiting for a person: rolled back instead
            self._fail(reason)

    # ----- install phase: per group Download, Install, reboots ----------------------------

    def _install_phase(self) -> None:
        while self.state.group < len(self.groups):
            keys = self.groups[self.state.group]
            error = self._install_group(keys)
            if error:
                self._fail(error)
                return
            self.state.group += 1
            self.state.step = ""
        error = self._health_window()
        if error:
            self._fail(error)
            return
        self._stop_before("ArtifactCommit")
        error = self._gate("ArtifactCommit", ())
        if error:
            self._fail(error)
            return
        self._enter("commit")

    def _install_group(self, keys: Sequence[str]) -> str | None:
        steps: list[tuple[str, Callable[[str], str | None]]] = [
            ("Download", self._download),
            ("ArtifactInstall", self._install),
            ("ArtifactReboot", self._reboot),
            ("ArtifactVerifyReboot", self._verify_reboot),
        ]
        for name, fn in self._remaining(steps):
            gate_error = self._gate(name, keys)
            if gate_error:
                return gate_error
            self._premark(keys, name)
            self._checkpoint_step(name)
            error = self._parallel(keys, fn)
            if error:
                return error
            if name == "ArtifactReboot":
                self._host_reboot_if_needed(keys, "reboot")
        return None

    def _premark(self, keys: Sequence[str], step: str) -> None:
        """Persist *before* the calls that a component entered the flow or started installing:
        after a crash in the middle of the state, resume must clean up / roll it back."""
        for key in keys:
            progress = self.state.progress[key]
            progress.entered = progress.entered or step == "Download"
            progress.install_started = progress.install_started or step == "ArtifactInstall"

    def _remaining(self, steps: list[tuple[str, T]]) -> list[tuple[str, T]]:
        """The steps of a group still to run: from the persisted step on (all on a fresh group).

        After a host reboot the step that asked for it is done: continue with the next one.
        """
        names = [name for name, _ in steps]
        if self.state.step not in names:
            return steps
        start = names.index(self.state.step)
        if self.state.host_reboot_pending:
            self.state.host_reboot_pending = False
            start += 1
        return steps[start:]

    def _download(self, key: str) -> str | None:
        progress = self.state.progress[key]
        progress.entered = True
        target = self.targets[key]
        tree = self.tree(key)
        prepare_tree(tree, header=header_files(target), current=current_files(target))
        unpacked = self._query(key, "NeedsUnpackedArtifact")
        sizes = self._query(key, "ProvidePayloadFileSizes")
        if isinstance(unpacked, _Failed) or isinstance(sizes, _Failed):
            return progress.error
        state = "DownloadWithFileSizes" if sizes == "Yes" else "Download"
        if is_stream_ref(target.artifact_path):
            assert target.artifact_path is not None and target.artifact is not None
            streamed = streamed_payloads(
                self.options.streams,
                target.artifact_path,
                target.artifact,
                unpacked=unpacked == "Yes",
                keys=self.options.keys,
            )
            try:
                error = self._run_download(key, state, streamed, with_sizes=sizes == "Yes")
            finally:
                streamed.close()  # the connection (and a cache fill) end with the call
        else:
            with _payloads(target, unpacked == "Yes", self.options.keys) as payloads:
                error = self._run_download(key, state, payloads, with_sizes=sizes == "Yes")
        if error is None:
            progress.downloaded = True
        return error

    def _run_download(
        self, key: str, state: str, payloads: Iterator[PayloadSource], *, with_sizes: bool
    ) -> str | None:
        argv = self._argv(key, state)
        step = self.journal.call_started(component=key, state=state, argv=argv)
        try:
            outcome = self.runner.download(
                argv, tree=self.tree(key), payloads=payloads, with_sizes=with_sizes
            )
        except (DownloadError, ArtifactError, InterfaceError, OSError) as exc:
            result = getattr(exc, "result", None)
            self.journal.call_finished(step, result=result, error=str(exc))
            return self._component_error(key, f"{state} failed: {exc}")
        self.journal.call_finished(step, result=outcome.result)
        return None if outcome.result.ok else self._component_error(key, _call_error(state, outcome.result))

    def _install(self, key: str) -> str | None:
        self.state.progress[key].install_started = True
        error = self._call(key, "ArtifactInstall")
        if error:
            return error
        answer = self._query(key, "NeedsArtifactReboot")
        if isinstance(answer, _Failed):
            return self.state.progress[key].error
        self.state.progress[key].reboot = answer
        return None

    def _reboot(self, key: str) -> str | None:
        progress = self.state.progress[key]
        if progress.reboot == "Yes":
            progress.reboot_ran = True
            return self._call(key, "ArtifactReboot")
        if progress.reboot == "Automatic":
            progress.reboot_ran = True  # the host reboot after the barrier counts as the reboot
        return None

    def _verify_reboot(self, key: str) -> str | None:
        if not self.state.progress[key].reboot_ran:
            return None
        return self._call(key, "ArtifactVerifyReboot")

    # ----- commit phase: every group ascending, only after all installed ------------------

    def _commit_phase(self) -> None:
        while self.state.group < len(self.groups):
            self._checkpoint_step("ArtifactCommit")
            error = self._parallel(self.groups[self.state.group], self._commit)
            if error:
                self._fail(error)
                return
            self.state.group += 1
        self._stop_before("Cleanup")
        self._enter("cleanup")

    def _commit(self, key: str) -> str | None:
        error = self._call(key, "ArtifactCommit")
        if error is None:
            self.state.progress[key].committed = True
        return error

    # ----- rollback phase: groups descending -----------------------------------------------

    def _rollback_phase(self) -> None:
        if self.state.step == "":
            self._stop_before("ArtifactRollback")
        while self.state.group >= 0:
            keys = self.groups[self.state.group] if self.groups else []
            self._rollback_group(keys)
            self.state.group -= 1
            self.state.step = ""
        self._stop_before("Cleanup")
        self._enter("cleanup")

    def _rollback_group(self, keys: Sequence[str]) -> None:
        touched = [k for k in keys if self.state.progress[k].install_started]
        steps: list[tuple[str, Callable[[str], str | None]]] = [
            ("SupportsRollback", self._ask_rollback),
            ("ArtifactRollback", self._rollback),
            ("ArtifactRollbackReboot", self._rollback_reboot),
            ("ArtifactVerifyRollbackReboot", self._verify_rollback_reboot),
            ("ArtifactFailure", self._failure),
        ]
        for name, fn in self._remaining(steps):
            self._checkpoint_step(name)
            self._parallel(touched, fn)
            if name == "ArtifactRollbackReboot":
                self._host_reboot_if_needed(touched, "rollback")

    def _ask_rollback(self, key: str) -> str | None:
        progress = self.state.progress[key]
        if progress.supports_rollback is None:
            answer = self._query(key, "SupportsRollback")
            progress.supports_rollback = "No" if isinstance(answer, _Failed) else answer
        return None

    def _rollback(self, key: str) -> str | None:
        progress = self.state.progress[key]
        if progress.supports_rollback != "Yes" or progress.rollback_ran:
            return None
        progress.rollback_ran = True
        progress.rollback_ok = self._call(key, "ArtifactRollback", record_error=False) is None
        return None

    def _rollback_reboot(self, key: str) -> str | None:
        progress = self.state.progress[key]
        if progress.rollback_ran and progress.reboot == "Yes":
            progress.rollback_reboot_ran = True
            self._call(key, "ArtifactRollbackReboot", record_error=False)  # errors here are ignored
        elif progress.rollback_ran and progress.reboot == "Automatic":
            progress.rollback_reboot_ran = True
        return None

    def _verify_rollback_reboot(self, key: str) -> str | None:
        progress = self.state.progress[key]
        if not progress.rollback_reboot_ran:
            return None
        for attempt in range(VERIFY_ROLLBACK_REBOOT_TRIES):
            if self._call(key, "ArtifactVerifyRollbackReboot", record_error=False) is None:
                return None
            if attempt + 1 < VERIFY_ROLLBACK_REBOOT_TRIES and progress.reboot == "Yes":
                self._call(key, "ArtifactRollbackReboot", record_error=False)
        progress.rollback_ok = False
        return None

    def _failure(self, key: str) -> str | None:
        progress = self.state.progress[key]
        if not progress.failure_ran:
            progress.failure_ran = True
            self._call(key, "ArtifactFailure", record_error=False)
        return None

    # ----- cleanup phase: every component that entered the flow, groups ascending ---------

    def _cleanup_phase(self) -> None:
        while self.state.group < len(self.groups):
            self._checkpoint_step("Cleanup")
            self._parallel(self.groups[self.state.group], self._cleanup)
            self.state.group += 1
        self.state.phase = "done"
        self.journal.checkpoint(self.state)

    def _cleanup(self, key: str) -> str | None:
        progress = self.state.progress[key]
        if progress.entered and not progress.cleaned:
            # As in Mender: a missing tree means Cleanup already ran (we died just after).
            if self.tree(key).is_dir():
                self._call(key, "Cleanup", record_error=False)
                remove_tree(self.tree(key))
            progress.cleaned = True
        return None

    # ----- host reboots ---------------------------------------------------------------------

    def _host_reboot_if_needed(self, keys: Sequence[str], why: str) -> None:
        progress = [self.state.progress[k] for k in keys]
        wanted = any(
            p.reboot == "Automatic" and (p.rollback_reboot_ran if why == "rollback" else p.reboot_ran)
            for p in progress
        )
        if not wanted:
            return
        self.state.host_reboot_pending = True
        self.journal.checkpoint(self.state)
        if self.options.exit_on_reboot:
            raise StopRun("reboot_required", f"host reboot required ({why}); run `resume` after it")
        self._run_reboot_command()
        time.sleep(self.options.reboot_wait_seconds)
        # Still alive: the command did not take the host down (a harmless command in the demo
        # and tests, or a failed reboot); the verify state tells which image really runs.
        self.state.host_reboot_pending = False

    def _run_reboot_command(self) -> None:
        step = self.journal.call_started(
            component="host", state="Reboot", argv=list(self.options.reboot_command)
        )
        try:
            done = subprocess.run(
                list(self.options.reboot_command), capture_output=True, text=True, check=False
            )
        except OSError as exc:
            self.journal.call_finished(step, result=None, error=f"reboot command failed: {exc}")
            return
        self.journal.call_finished(step, result=None, answer=f"exit {done.returncode}")

    # ----- the policy: approval gates and the health window (docs/policy.md) -----------------

    def _gate(self, before: str, keys: Sequence[str]) -> str | None:
        """Wait for a person before `before` (once per run): None to go on, else why to roll
        back. The wait is persisted first, so a process killed here waits again on resume."""
        if before not in self.options.gates or before in self.state.passed or self.watch is None:
            return None
        if before == "ArtifactReboot" and all(self.state.progress[k].reboot == "No" for k in keys):
            return None  # "before the first reboot": a group that does not reboot passes
        self.state.step, self.state.gate = before, before
        self.journal.checkpoint(self.state)
        error = self.watch.gate(before)
        self.state.gate = ""
        self.state.passed.append(before)
        return error

    def _health_window(self) -> str | None:
        """Every component verified its reboot: the system's own checks must keep passing
        for the window before the first ArtifactCommit. A crash here runs the window again."""
        if not self.options.health_window or "health" in self.state.passed or self.watch is None:
            return None
        self._checkpoint_step("HealthWindow")
        error = self.watch.health()
        self.state.passed.append("health")
        return error

    # ----- helpers --------------------------------------------------------------------------

    def _stop_before(self, state: str) -> None:
        if state in self.options.stop_before:
            self.state.step = f"stopped-before-{state}"
            raise StopRun("stopped", f"stopped before {state}")

    def _checkpoint_step(self, step: str) -> None:
        self.state.step = step
        self.journal.checkpoint(self.state)

    def _parallel(self, keys: Sequence[str], fn: Callable[[str], str | None]) -> str | None:
        """Run `fn` for every key at once and wait for all (the per-state barrier)."""
        if not keys:
            return None
        if len(keys) == 1:
            return fn(keys[0])
        errors = map_in_context(self.pool, fn, keys)
        return next((e for e in errors if e), None)

    def _argv(self, key: str, state: str) -> list[str]:
        target = self.targets[key]
        component = target.component
        return self.runner.argv(
            interface=component.interface,
            state=state,
            workdir=self.tree(key),
            component_type=component.component_type,
            component_id=component.component_id,
            args=component.interface_args,
        )

    def _call(self, key: str, state: str, *, record_error: bool = True) -> str | None:
        argv = self._argv(key, state)
        step = self.journal.call_started(component=key, state=state, argv=argv)
        result = self.runner.call(argv, cwd=self.tree(key))
        self.journal.call_finished(step, result=result)
        if result.ok:
            return None
        message = _call_error(state, result)
        return self._component_error(key, message) if record_error else message

    def _query(self, key: str, state: str) -> str | _Failed:
        argv = self._argv(key, state)
        step = self.journal.call_started(component=key, state=state, argv=argv)
        result = self.runner.call(argv, cwd=self.tree(key))
        if not result.ok:
            self.journal.call_finished(step, result=result)
            self._component_error(key, _call_error(state, result))
            return _Failed()
        try:
            answer = parse_query_answer(state, result.stdout, interface=self.targets[key].component.interface)
        except InterfaceError as exc:
            self.journal.call_finished(step, result=result, error=str(exc))
            self._component_error(key, str(exc))
            return _Failed()
        self.journal.call_finished(step, result=result, answer=answer)
        return answer

    def _component_error(self, key: str, message: str) -> str:
        self.state.progress[key].error = message
        return f"{key}: {message}"

    def tree(self, key: str) -> Path:
        return self.options.work_root / key

    def _highest_touched_group(self) -> int:
        touched = [
            i for i, keys in enumerate(self.groups) if any(self.state.progress[k].entered for k in keys)
        ]
        return max(touched, default=-1)

    def _result(self) -> Result:
        if not self.state.failed:
            return Result("succeeded", "all components installed and committed", tuple(self.targets))
        stuck = [k for k, p in self.state.progress.items() if p.install_started and not p.rollback_ok]
        if self.state.given_up:
            return Result("inconsistent", self.state.given_up, tuple(stuck or self.targets))
        if stuck:
            return Result(
                "inconsistent", f"{self.state.reason}; could not roll back: {', '.join(stuck)}", tuple(stuck)
            )
        return Result(
            "rolled_back", self.state.reason, tuple(k for k, p in self.state.progress.items() if p.entered)
        )


class _Failed:
    """Marker for a query that failed (the error is on the component's progress)."""


def _install_groups(plan: Plan) -> list[tuple[int, list[str]]]:
    installing = {t.key for t in plan.installing()}
    groups = [(order, [k for k in keys if k in installing]) for order, keys in plan.groups]
    return [(order, keys) for order, keys in groups if keys]


def _call_error(state: str, result: CallResult) -> str:
    if result.timed_out:
        return f"{state} timed out"
    tail = result.stderr.strip().splitlines()[-1:] if result.stderr.strip() else []
    detail = f": {tail[0]}" if tail else ""
    return f"{state} exited with {result.exit_code}{detail}"


def header_files(target: Target) -> HeaderFiles:
    info = target.artifact
    assert info is not None
    return HeaderFiles(
        artifact_name=info.name,
        artifact_group=info.group or "",
        payload_type=target.component.interface,
        header_info=info.header_info_raw,
        type_info=info.type_info_raw,
        meta_data=info.meta_data_raw,
    )


def current_files(target: Target) -> CurrentFiles:
    current = target.current
    name = current.get("artifact_name") or target.current_version
    return CurrentFiles(
        artifact_name=name,
        artifact_group=current.get("artifact_group", ""),
        device_type=target.component.component_type,
    )


class _payloads:
    """Context manager yielding the payload streams for `Download`.

    Unpacked: each payload file, checksum-verified as it streams (the reader raises at the
    file's last byte). Packed (`NeedsUnpackedArtifact` No): one stream with the whole `.mender`.
    """

    def __init__(self, target: Target, unpacked: bool, keys: Sequence[PublicKey]) -> None:
        assert target.artifact_path is not None
        self.path = target.artifact_path
        self.unpacked = unpacked
        self.keys = keys

    def __enter__(self) -> Iterator[PayloadSource]:
        self.file = open(self.path, "rb")
        if not self.unpacked:
            return iter([_WholeFile(self.file, self.path.stat().st_size)])
        reader = ArtifactReader(self.file, keys=self.keys)
        reader.read_header()
        return _verified(reader)

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _verified(reader: ArtifactReader) -> Iterator[PayloadSource]:
    yield from reader.payloads()
    reader.finish()


class _WholeFile:
    name = "artifact.mender"

    def __init__(self, file: Any, size: int) -> None:
        self.file = file
        self.size = size

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.file.read(n)
        return data
