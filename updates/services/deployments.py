"""Writes for deployments: every state change of a deployment goes through a function here.

The engine does the orchestration; these functions load inputs, claim the work, snapshot what
the run depends on, and keep the database rows (the source of truth) in step with it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypedDict, TypeVar, cast

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_prune_by_policy, journal_append, journal_lock
from devices.services import components_record
from updates import selectors
from updates.actors import SYSTEM, Actor
from updates.engine.errors import (
    BusyError,
    CleanupStarted,
    ExitCode,
    NotFound,
    NothingInProgress,
    OrchestratorError,
)
from updates.engine.machine import Machine, Options, Result, RunState
from updates.engine.manifest import DesiredState, Topology, TopologyJson, parse_manifest
from updates.engine.planner import Plan, SelectionError, select, target_versions
from updates.engine.transitions import ConstraintViolation
from updates.liveness import owner_alive, owner_pid, owner_token, stop_leftover_calls
from updates.models import ActiveManifests, Bundle, Deployment, DeploymentStatus, Manifest, Step, StepEvent
from updates.services.components import components_refresh_after_deployment
from updates.services.constraints import (
    Forced,
    constraints_restore,
    constraints_snapshot,
    plan_verdict,
    verdict_as_json,
)
from updates.services.environment import (
    Echo,
    Environment,
    desired_state_load,
    environment_load,
    live_inspector,
)
from updates.services.gates import DbWatch, deployment_policy, policy_snapshot
from updates.services.retention import store_retention_after_deployment
from updates.services.runlog import deployment_logged
from updates.services.sources import artifact_sources
from updates.services.streams import cache_clean_after_deployment, stream_opener
from updates.step_journal import DbJournal, step_journal_row

P = ParamSpec("P")
R = TypeVar("R")

# ----- create and execute ----------------------------------------------------------------------


def deployment_create(
    *,
    manifest_path: Path,
    topology_components: Path | None = None,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    actor: Actor,
    forced: Forced | None = None,
) -> Deployment:
    """Validate the inputs and queue a deployment (it holds the single in-progress slot) for
    `actor`, who asked for it (recorded on the row and in the journal).

    Raises InputError (nothing recorded) and BusyError. `deployment_execute` runs it: at once
    from the CLI, on a worker from the web. `forced` (see `forced_override`) runs it even when it
    violates the declared constraints, and is recorded on the row.
    """
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    options = _RunOptions(stop_before=list(stop_before), exit_on_reboot=exit_on_reboot)
    return _deployment_queue(
        env,
        desired,
        kind="install",
        options=options,
        actor=actor,
        forced=forced,
        bundle=_bundle_holding(desired.manifest.path),
    )


def deployment_create_previous(
    *,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    actor: Actor,
    forced: Forced | None = None,
) -> Deployment:
    """Queue the previous manifest again: "go back to the last known good system"."""
    pointers = selectors.active_manifests()
    if pointers is None or pointers.previous is None:
        raise NothingInProgress("there is no previous manifest to go back to")
    options = _RunOptions(stop_before=list(stop_before), exit_on_reboot=exit_on_reboot)
    return _deployment_queue_stored(
        pointers.previous, kind="previous", options=options, actor=actor, forced=forced
    )


def deployment_create_reconcile(*, actor: Actor, stop_before: Sequence[str] = ()) -> Deployment:
    """Queue the active manifest again (docs/policy.md, drift): the planner skips every component
    that already runs its version, so only the drifted ones are installed."""
    pointers = selectors.active_manifests()
    if pointers is None or pointers.active is None:
        raise NothingInProgress("no manifest is active yet: there is nothing to reconcile with")
    options = _RunOptions(stop_before=list(stop_before), exit_on_reboot=False)
    return _deployment_queue_stored(pointers.active, kind="reconcile", options=options, actor=actor)


def deployment_install_reconcile(*, actor: Actor, echo: Echo | None = None) -> Deployment:
    """The CLI's `reconcile`: queue the active manifest again, then execute it in this process."""
    deployment = deployment_create_reconcile(actor=actor)
    return deployment_execute(deployment_id=deployment.pk, actor=actor, echo=echo)


def _deployment_queue_stored(
    manifest: Manifest, *, kind: str, options: _RunOptions, actor: Actor, forced: Forced | None = None
) -> Deployment:
    """Queue a manifest the appliance already ran (its snapshot, not the file it came from)."""
    env = environment_load()
    desired = desired_state_load(
        env,
        manifest_path=Path(manifest.source_path),
        topology_components=None,
        manifest_data=manifest.raw.encode(),
    )
    # The same manifest from the same bundle: its deployment's key, not its path, says which.
    installed = manifest.deployments.select_related("bundle").order_by("id").first()
    return _deployment_queue(
        env,
        desired,
        kind=kind,
        options=options,
        actor=actor,
        forced=forced,
        bundle=installed.bundle if installed else None,
    )


def deployment_install(*, actor: Actor, echo: Echo | None = None, **kwargs: Any) -> Deployment:
    """The CLI's `install`: create, then execute in this process."""
    deployment = deployment_create(actor=actor, **kwargs)
    return deployment_execute(deployment_id=deployment.pk, actor=actor, echo=echo)


def deployment_install_previous(*, actor: Actor, echo: Echo | None = None, **kwargs: Any) -> Deployment:
    deployment = deployment_create_previous(actor=actor, **kwargs)
    return deployment_execute(deployment_id=deployment.pk, actor=actor, echo=echo)


def _released_on_crash(fn: Callable[P, R]) -> Callable[P, R]:
    """An unexpected error in this process (a bug, a lost database connection) leaves the
    deployment to recovery, as if its runner had died: in a long-lived worker the owner token
    would otherwise stay "alive" and block every takeover until the worker restarts."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OrchestratorError:
            raise  # expected refusals: the row already says what happened
        except BaseException:
            with contextlib.suppress(Exception):
                Deployment.objects.filter(owner=owner_token(), status__in=Deployment.RUNNABLE).update(
                    owner=""
                )
            raise

    return wrapper


@_released_on_crash
def deployment_execute(*, deployment_id: int, actor: Actor, echo: Echo | None = None) -> Deployment:
    """Inspect, select and run a queued deployment; `actor` starts it (the CLI that created it,
    a `resume` of a queued one, or the row's own actor when a worker picks it up).

    Claiming is a conditional UPDATE (queued -> running): a redelivered or duplicated task
    message finds nothing to claim and returns the row as it is.
    """
    with transaction.atomic():
        claimed = Deployment.objects.filter(pk=deployment_id, status=Deployment.Status.QUEUED).update(
            status=Deployment.Status.RUNNING, owner=owner_token(), started_at=timezone.now()
        )
        if claimed == 1:
            entry = journal_append(
                kind="deployment.started",
                actor=actor,
                subject=f"deployment:{deployment_id}",
                data={"status": Deployment.Status.RUNNING},
            )
            Deployment.objects.filter(pk=deployment_id).update(seal=entry.hash)
    deployment = Deployment.objects.select_related("manifest").get(pk=deployment_id)
    if claimed != 1:
        return deployment
    with deployment_logged(deployment, action=f"started ({deployment.kind})", actor=actor.label):
        return _execute_claimed(deployment, echo=echo)


def _execute_claimed(deployment: Deployment, *, echo: Echo | None) -> Deployment:
    env = environment_load()
    desired = _desired_state_of(deployment.manifest)
    journal = DbJournal(deployment, echo=echo)
    try:
        plan = _plan(env, deployment, desired, journal)
        options = _machine_options(env, deployment, deployment.stop_before, deployment.exit_on_reboot)
        machine = Machine(
            plan=plan,
            runner=env.runner(),
            journal=journal,
            options=options,
            watch=_watch(env, deployment, journal, echo),
        )
        result = machine.run()
    finally:
        journal.close()
    return _deployment_finish(env, deployment, result, machine.state)


class _RunOptions(TypedDict):
    stop_before: list[str]
    exit_on_reboot: bool


def _deployment_queue(
    env: Environment,
    desired: DesiredState,
    *,
    kind: str,
    options: _RunOptions,
    actor: Actor,
    forced: Forced | None = None,
    bundle: Bundle | None = None,
) -> Deployment:
    # The constraints file is validated (InputError) and kept with the run before anything is recorded.
    constraints_file = constraints_snapshot(env, desired)
    policy = policy_snapshot(env)  # docs/policy.md: validated now, kept for the whole run
    try:
        with transaction.atomic():
            manifest = _manifest_snapshot(desired)
            # `slot` is unique: a second deployment in progress fails here, whoever races us.
            deployment = Deployment.objects.create(
                manifest=manifest,
                kind=kind,
                **options,
                status=Deployment.Status.QUEUED,
                actor=actor.as_json(),  # the same actor on the row and in the journal
                forced_reason=forced.reason if forced else "",
                constraints_file=constraints_file,
                policy=policy,
                bundle=bundle,
            )
            deployment.work_dir = str(env.work_root / str(deployment.pk))
            entry = journal_append(
                kind="deployment.created",
                actor=actor,
                subject=f"deployment:{deployment.pk}",
                data=_created_record(deployment),
            )
            deployment.seal = entry.hash  # the row names the entry that recorded it (docs/audit.md)
            deployment.save(update_fields=["work_dir", "seal"])
    except IntegrityError:
        raise _busy() from None
    return deployment


def _created_record(deployment: Deployment) -> dict[str, object]:
    """What the journal keeps of a new deployment: the manifest from → to and the bundle."""
    pointers = selectors.active_manifests()
    active = pointers.active if pointers else None
    return {
        "status": deployment.status,
        "kind": deployment.kind,
        "options": {"stop_before": deployment.stop_before, "exit_on_reboot": deployment.exit_on_reboot},
        "manifest": _manifest_record(deployment.manifest),
        "from": _manifest_record(active) if active else None,
        "bundle": _bundle_record(deployment.bundle) if deployment.bundle else None,
        "forced": {"by": deployment.who.as_json(), "reason": deployment.forced_reason}
        if deployment.forced
        else None,
    }


def _manifest_record(manifest: Manifest) -> dict[str, object]:
    return {"id": manifest.pk, "name": manifest.name, "sha256": manifest.sha256, "form": manifest.form}


def _bundle_holding(manifest_path: Path) -> Bundle | None:
    """The accepted bundle a manifest is installed from: installs by bundle id, bundle file or
    webhook all read it from the bundle's own directory (`bundle_manifest_path`). Asked once,
    when the deployment is created; from then on its `bundle` key says it."""
    folders = [str(p) for p in Path(manifest_path).resolve().parents]
    return Bundle.objects.filter(status=Bundle.Status.ACCEPTED, directory__in=folders).first()


def _bundle_record(bundle: Bundle) -> dict[str, object]:
    """The journal's record of the bundle: each artifact's digest and signer."""
    return {
        "id": bundle.pk,
        "sha256": bundle.sha256,
        "filename": bundle.filename,
        "artifacts": [
            {
                "name": a.artifact.name,
                "sha256": a.artifact.sha256,
                "signed": a.artifact.signed,
                "signer": a.artifact.signer_fingerprint,
            }
            for a in bundle.artifacts.select_related("artifact")
        ],
    }


def deployment_busy_check() -> None:
    """Raise BusyError when a deployment is in progress: for callers that would otherwise ask
    every component first (a live plan) only to be refused by the in-progress slot, and meanwhile
    query interfaces that a running deployment is driving."""
    running = selectors.deployment_in_progress()
    if running is not None:
        raise BusyError(_busy_message(running))


def _busy() -> BusyError:
    """Why a new deployment cannot start, and what to do: wait while its runner works, take it
    over (`resume` or `rollback`) only when nobody runs it."""
    running = selectors.deployment_in_progress()
    if running is None:
        return BusyError("another deployment has just started: try again when it has ended")
    return BusyError(_busy_message(running))


def _busy_message(running: Deployment) -> str:
    since = timezone.localtime(running.started_at or running.created_at).strftime("%Y-%m-%d %H:%M:%S")
    what = f"deployment {running.pk} ({running.manifest.name})"
    if running.status == Deployment.Status.WAITING_APPROVAL and owner_alive(running.owner):
        return f"{what} waits for approval at the gate before {running.gate}: `approve` or `reject` it"
    if running.status == Deployment.Status.RUNNING and owner_alive(running.owner):
        return f"{what} is running (pid {owner_pid(running.owner)}, since {since}): wait for it to end"
    if running.status == Deployment.Status.QUEUED:
        return (
            f"{what} is queued since {since}: wait for a worker to start it, or cancel it (the Cancel "
            "button on its page; on the command line `resume` runs it here)"
        )
    if running.status in Deployment.RUNNABLE:
        return f"{what} was left running by a process that is gone: run `resume` or `rollback` first"
    return f"{what} is {running.status} since {since}: run `resume` or `rollback` first"


def _manifest_snapshot(desired: DesiredState) -> Manifest:
    """The exact manifest bytes and the normalised topology, as read at `install` time: later
    edits of either file only affect the next deployment."""
    raw = desired.manifest.raw
    return Manifest.objects.create(
        name=desired.manifest.name,
        form=desired.manifest.form,
        sha256=hashlib.sha256(raw).hexdigest(),
        raw=raw.decode("utf-8", "replace"),
        source_path=str(desired.manifest.path),
        topology=desired.topology.to_json(),
    )


def _desired_state_of(manifest: Manifest) -> DesiredState:
    parsed, _ = parse_manifest(manifest.raw.encode(), path=Path(manifest.source_path))
    return DesiredState(parsed, Topology.from_json(cast(TopologyJson, manifest.topology)))


def _plan(env: Environment, deployment: Deployment, desired: DesiredState, journal: DbJournal) -> Plan:
    try:
        with live_inspector(
            env, journal=journal, workdir=Path(deployment.work_dir) / "_inspect"
        ) as inspector:
            inspected = inspector.inspect(desired.topology.components)
        plan = select(desired, inspected, keys=env.keys(), sources=artifact_sources(env, streamed=True))
    except SelectionError as exc:
        deployment_close(deployment, status=Deployment.Status.REJECTED, reason=str(exc), actor=deployment.who)
        raise
    components_record(inspected=inspected, topology=desired.topology)
    deployment.plan = plan.to_json()
    _check_constraints(env, deployment, desired, plan, journal)
    with transaction.atomic():
        deployment.save(update_fields=["plan"])
        journal_append(
            kind="deployment.planned",
            actor=deployment.who,
            subject=f"deployment:{deployment.pk}",
            data={"components": [target_versions(c) for c in plan.to_json()["components"]]},
        )
    return plan


def _check_constraints(
    env: Environment, deployment: Deployment, desired: DesiredState, plan: Plan, journal: DbJournal
) -> None:
    """Refuse (nothing touched) a plan that would pass through a forbidden state, unless forced."""
    constraints = constraints_restore(desired, deployment.constraints_file)
    if constraints is None:
        return
    verdict = plan_verdict(env.runner(), plan, constraints, Path(deployment.work_dir) / "_preview")
    deployment.plan["constraints"] = verdict_as_json(verdict)
    if verdict.ok:
        return
    if not deployment.forced:
        violation = ConstraintViolation(verdict)
        deployment_close(
            deployment, status=Deployment.Status.REJECTED, reason=str(violation), actor=deployment.who
        )
        raise violation
    journal.echo(
        f"constraints violated, run anyway: forced by {deployment.who.label} ({deployment.forced_reason}): "
        + "; ".join(verdict.reasons())
    )


def deployment_close(
    deployment: Deployment,
    *,
    status: DeploymentStatus,
    reason: str,
    actor: Actor,
    components: Sequence[str] | None = None,
    position: dict[str, Any] | None = None,
) -> Deployment:
    """End a deployment: its final status and reason, when, and it gives up the in-progress
    slot and its owner (the database refuses a terminal row that keeps the slot). `actor`:
    whose run ends (the engine ends a run on behalf of who asked for it: `deployment.who`)."""
    if status not in Deployment.TERMINAL:
        raise ValueError(f"{status} is not a final status")  # a bug in the caller, not an input
    deployment.status, deployment.reason = status, reason
    if components is not None:
        deployment.components = list(components)
    if position is not None:
        deployment.position = position
    deployment.finished_at = timezone.now()
    deployment.slot = None
    deployment.owner = ""
    # A wait at a gate ends with the run (who decided stays in the journal).
    deployment.gate, deployment.gate_expires_at, deployment.gate_decision = "", None, ""
    deployment.gate_decided_by, deployment.gate_reason = None, ""
    # Its summary, once: later reads of its outcome need none of its steps (the Provides queries
    # recorded after the end are queries, never a failed update state).
    deployment.failed_in = selectors.failed_states_from_steps(deployment)
    with transaction.atomic():
        journal_lock()  # the head before the row, as the step writer takes them (no deadlock)
        deployment.save()
        _journal_outcome(deployment, actor)  # the end, in the journal (and its head signed) with the row
    return deployment


class NotQueued(OrchestratorError):
    """Only a deployment no runner has taken yet can be cancelled: a started one is rolled back."""

    code = "not_queued"
    exit_code = ExitCode.INVALID
    http_status = 409


def deployment_cancel(*, deployment_id: int, actor: Actor) -> Deployment:
    """Cancel a queued deployment before any runner claims it: it ends `rejected` ("refused
    before anything was touched") with who cancelled it as its reason, journaled with `actor`.
    Raises NotFound, NotQueued (a runner claimed it meanwhile: roll it back instead)."""
    with transaction.atomic():
        # Locked against the runner's claim (`queued -> running`, a conditional UPDATE): either
        # the claim finds it cancelled and does nothing, or this finds it running and refuses.
        deployment = (
            Deployment.objects.select_for_update().select_related("manifest").filter(pk=deployment_id).first()
        )
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} does not exist")
        if deployment.status != Deployment.Status.QUEUED:
            raise NotQueued(
                f"deployment {deployment_id} is {deployment.status}, not queued: only a queued "
                "deployment can be cancelled (roll back one that has started)"
            )
        reason = f"cancelled by {actor.label} before it started"
        return deployment_close(deployment, status=Deployment.Status.REJECTED, reason=reason, actor=actor)


def _journal_outcome(deployment: Deployment, actor: Actor) -> None:
    """`deployment.finished` when it ended (the head gets signed), `deployment.paused` when it
    stopped or waits for a reboot."""
    ended = deployment.finished_at is not None
    entry = journal_append(
        kind="deployment.finished" if ended else "deployment.paused",
        actor=actor,
        subject=f"deployment:{deployment.pk}",
        data={
            "status": deployment.status,
            "reason": deployment.reason,
            "components": list(deployment.components),
            "phase": deployment.position.get("phase", ""),
            # What each component runs now, by the run's records: the report's "after".
            "versions": selectors.component_versions(deployment),
        },
    )
    deployment.seal = entry.hash
    Deployment.objects.filter(pk=deployment.pk).update(seal=entry.hash)


def _watch(env: Environment, deployment: Deployment, journal: DbJournal, echo: Echo | None) -> DbWatch | None:
    policy = deployment_policy(deployment)
    if policy is None:
        return None
    return DbWatch(deployment, policy, env=env, journal=journal, echo=echo or journal.echo)


def _machine_options(
    env: Environment, deployment: Deployment, stop_before: Sequence[str], exit_on_reboot: bool
) -> Options:
    policy = deployment_policy(deployment)
    return Options(
        gates=frozenset(g.before for g in policy.gates) if policy else frozenset(),
        health_window=bool(policy and policy.health and policy.health.checks),
        work_root=Path(deployment.work_dir),
        keys=env.keys(),
        stop_before=frozenset(stop_before),
        exit_on_reboot=exit_on_reboot,
        reboot_command=env.reboot_command,
        reboot_wait_seconds=env.reboot_wait_seconds,
        streams=stream_opener(env, since=deployment.started_at),
    )


def _deployment_finish(
    env: Environment, deployment: Deployment, result: Result, state: RunState
) -> Deployment:
    status = Deployment.OUTCOME_STATUS[result.outcome]
    with transaction.atomic():
        if status in Deployment.TERMINAL:
            deployment_close(
                deployment,
                status=status,
                reason=result.reason,
                actor=deployment.who,
                components=result.components,
                position=state.to_json(),
            )
        else:  # a pause (--stop-before, --exit-on-reboot): it keeps the slot, nobody runs it
            deployment.status, deployment.reason = status, result.reason
            deployment.components, deployment.position = list(result.components), state.to_json()
            deployment.owner = ""
            deployment.save()
            _journal_outcome(deployment, deployment.who)
        if status == Deployment.Status.SUCCEEDED:
            _activate(env, deployment.manifest)
    if status in Deployment.TERMINAL:
        _refresh_after(env, deployment)
        # Every component's tree went at its Cleanup; what remains (inspection scratch) goes now.
        shutil.rmtree(deployment.work_dir, ignore_errors=True)
        # docs/protocol.md §5.2: trim the artifact store after each deployment, as `gc` does (keeps
        # what the active, previous and in-progress manifests need). Logs, never raises.
        cache_clean_after_deployment(env, since=deployment.started_at)  # docs/bytes.md
        store_retention_after_deployment(env)
        audit_prune_by_policy(actor=SYSTEM)
    return deployment


def _refresh_after(env: Environment, deployment: Deployment) -> None:
    topology = _desired_state_of(deployment.manifest).topology
    journal = DbJournal(deployment)
    try:
        components_refresh_after_deployment(env, topology=topology, journal=journal)
    finally:
        journal.close()


def _activate(env: Environment, manifest: Manifest) -> None:
    pointers, _ = ActiveManifests.objects.get_or_create(pk=1)
    if pointers.active_id != manifest.pk:
        # The same manifest again (`reconcile`, docs/policy.md) keeps the previous one: going
        # back must still reach the system before it.
        if pointers.active is None or pointers.active.sha256 != manifest.sha256:
            pointers.previous = pointers.active
        pointers.active = manifest
        pointers.save()
    _store_manifest(env, "active.yaml", manifest)
    if pointers.previous is not None:
        _store_manifest(env, "previous.yaml", pointers.previous)


def _store_manifest(env: Environment, name: str, manifest: Manifest) -> None:
    path = env.manifest_store / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.raw)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


# ----- resume and rollback -----------------------------------------------------------------------


def deployment_resume(
    *,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    echo: Echo | None = None,
    actor: Actor,
    dead_owner: str = "",
) -> Deployment:
    """Continue the deployment in progress from its persisted position. `dead_owner`: the owner
    token a worker of its host found dead, which this process may not be able to check."""
    deployment = _in_progress_or_raise("resume")
    return _continue(
        deployment,
        stop_before=stop_before,
        exit_on_reboot=exit_on_reboot,
        echo=echo,
        rollback=False,
        actor=actor,
        dead_owner=dead_owner,
    )


def deployment_rollback(
    *,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    echo: Echo | None = None,
    actor: Actor,
) -> Deployment:
    """Roll back the deployment in progress (committed components included)."""
    deployment = _in_progress_or_raise("roll back")
    # Refuse before the takeover: a refused `rollback` must leave the row exactly as it was
    # (claiming it first left it "running" for a dead owner, which the next resume counted
    # as a crash).
    if deployment.position.get("phase") in ("cleanup", "done"):
        raise CleanupStarted("cleanup has started: the deployment can no longer be rolled back")
    return _continue(
        deployment,
        stop_before=stop_before,
        exit_on_reboot=exit_on_reboot,
        echo=echo,
        rollback=True,
        actor=actor,
    )


def _in_progress_or_raise(verb: str) -> Deployment:
    deployment = selectors.deployment_in_progress()
    if deployment is None:
        raise NothingInProgress(f"no deployment in progress: nothing to {verb}")
    return deployment


@_released_on_crash
def _continue(
    deployment: Deployment,
    *,
    stop_before: Sequence[str],
    exit_on_reboot: bool,
    echo: Echo | None,
    rollback: bool,
    actor: Actor,
    dead_owner: str = "",
) -> Deployment:
    if deployment.status == Deployment.Status.QUEUED:
        return deployment_execute(deployment_id=deployment.pk, actor=actor, echo=echo)
    request = {"stop_before": list(stop_before), "exit_on_reboot": exit_on_reboot}
    kind = "deployment.rollback" if rollback else "deployment.resumed"
    crashed = _deployment_takeover(deployment, journal=(kind, actor, request), dead_owner=dead_owner)
    action = ("rolling back" if rollback else "resumed") + (" after a crash" if crashed else "")
    with deployment_logged(deployment, action=action, actor=actor.label):
        return _continue_claimed(
            deployment,
            stop_before=stop_before,
            exit_on_reboot=exit_on_reboot,
            echo=echo,
            rollback=rollback,
            crashed=crashed,
        )


def _continue_claimed(
    deployment: Deployment,
    *,
    stop_before: Sequence[str],
    exit_on_reboot: bool,
    echo: Echo | None,
    rollback: bool,
    crashed: bool,
) -> Deployment:
    if crashed:
        stop_leftover_calls(Path(deployment.work_dir))
    stored = deployment.planned()
    if stored is None:
        return _deployment_close_untouched(deployment)
    env = environment_load()
    plan = Plan.from_json(stored, keys=env.keys())
    state = RunState.from_json(deployment.position) if deployment.position else None
    journal = DbJournal(deployment, echo=echo)
    try:
        options = _machine_options(env, deployment, stop_before, exit_on_reboot)
        machine = Machine(
            plan=plan,
            runner=env.runner(),
            journal=journal,
            options=options,
            state=state,
            watch=_watch(env, deployment, journal, echo),
        )
        if crashed:
            _close_interrupted_steps(deployment)
            machine.recover_after_crash()
        if rollback:
            machine.request_rollback("rollback requested by the operator")
        result = machine.run()
    finally:
        journal.close()
    return _deployment_finish(env, deployment, result, machine.state)


def _deployment_takeover(
    deployment: Deployment, *, journal: tuple[str, Actor, dict[str, object]], dead_owner: str = ""
) -> bool:
    """Claim a deployment in progress for this process; True when its last runner died.

    The conditional UPDATE (on the owner we read) makes two resumers race safely: one wins.
    The journal records who asked (kind, actor, request) in the same transaction. A token found
    dead stays dead (its pid and start time never come back), so `dead_owner` is believed.
    """
    known_dead = bool(dead_owner) and deployment.owner == dead_owner
    if deployment.status in Deployment.RUNNABLE and not known_dead and owner_alive(deployment.owner):
        raise BusyError(_busy_message(deployment))
    # A process that died waiting at a gate left no call running; resume waits there again.
    crashed = deployment.status in Deployment.RUNNABLE
    kind, actor, request = journal
    with transaction.atomic():
        claimed = Deployment.objects.filter(
            pk=deployment.pk, owner=deployment.owner, status=deployment.status
        ).update(owner=owner_token(), status=Deployment.Status.RUNNING)
        if claimed != 1:
            raise BusyError(f"deployment {deployment.pk} was just claimed by another process")
        entry = journal_append(
            kind=kind,
            actor=actor,
            subject=f"deployment:{deployment.pk}",
            data={
                **request,
                "status": Deployment.Status.RUNNING,
                "status_before": deployment.status,
                "after_crash": crashed,
            },
        )
        Deployment.objects.filter(pk=deployment.pk).update(seal=entry.hash)
    deployment.refresh_from_db()
    return crashed


def _close_interrupted_steps(deployment: Deployment) -> None:
    """Calls that were running when the process died: recorded as interrupted, never as done."""
    with transaction.atomic():
        open_steps = list(deployment.steps.filter(ended_at__isnull=True).values_list("pk", flat=True))
        Step.objects.filter(pk__in=open_steps).update(
            ended_at=timezone.now(), error="interrupted: the orchestrator stopped during this call"
        )
        StepEvent.objects.bulk_create(
            StepEvent(deployment=deployment, step_id=pk, kind="finished") for pk in open_steps
        )
        for step in Step.objects.filter(pk__in=open_steps).order_by("id"):
            step_journal_row(step)


def _deployment_close_untouched(deployment: Deployment) -> Deployment:
    _close_interrupted_steps(deployment)
    return deployment_close(
        deployment,
        actor=deployment.who,
        status=Deployment.Status.ROLLED_BACK,
        reason="interrupted before any component was touched; nothing to roll back",
    )
