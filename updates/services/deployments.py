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
from typing import Any, ParamSpec, TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from devices.services import components_record
from updates import selectors
from updates.actors import SYSTEM, Actor, actor_of_command_line
from updates.claims import owner_alive, owner_token, stop_leftover_calls
from updates.engine.artifact import PublicKey, read_artifact
from updates.engine.inspection import Inspector
from updates.engine.machine import Machine, Options, Result, RunState
from updates.engine.manifest import Component, DesiredState, Topology, parse_manifest
from updates.engine.planner import Plan, SelectionError, Target, select
from updates.journal import DbJournal, step_journal_row
from updates.models import ActiveManifests, Bundle, Deployment, Manifest, Step, StepEvent
from updates.services.audit import audit_prune_by_policy, journal_append
from updates.services.bundles import store_retention_after_deployment
from updates.services.components import components_refresh_quietly
from updates.services.environment import (
    BusyError,
    Echo,
    Environment,
    NothingInProgress,
    desired_state_load,
    environment_load,
)
from updates.services.sources import artifact_sources

P = ParamSpec("P")
R = TypeVar("R")

# ----- create and execute ----------------------------------------------------------------------


def deployment_create(
    *,
    manifest_path: Path,
    topology_components: Path | None = None,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    created_by: str = "cli",
    actor: Actor | None = None,
) -> Deployment:
    """Validate the inputs and queue a deployment (it holds the single in-progress slot).

    Raises InputError (nothing recorded) and BusyError. `deployment_execute` runs it: at once
    from the CLI, on a worker from the web.
    """
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    options = {"stop_before": list(stop_before), "exit_on_reboot": exit_on_reboot}
    return _deployment_queue(
        env, desired, kind="install", options=options, created_by=created_by, actor=actor
    )


def deployment_create_previous(
    *,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    created_by: str = "cli",
    actor: Actor | None = None,
) -> Deployment:
    """Queue the previous manifest again: "go back to the last known good system"."""
    env = environment_load()
    pointers = selectors.active_manifests()
    if pointers is None or pointers.previous is None:
        raise NothingInProgress("there is no previous manifest to go back to")
    previous = pointers.previous
    desired = desired_state_load(
        env,
        manifest_path=Path(previous.source_path),
        topology_components=None,
        manifest_data=previous.raw.encode(),
    )
    options = {"stop_before": list(stop_before), "exit_on_reboot": exit_on_reboot}
    return _deployment_queue(
        env, desired, kind="previous", options=options, created_by=created_by, actor=actor
    )


def deployment_install(*, echo: Echo | None = None, **kwargs: Any) -> Deployment:
    """The CLI's `install`: create, then execute in this process."""
    return deployment_execute(deployment_id=deployment_create(**kwargs).pk, echo=echo)


def deployment_install_previous(*, echo: Echo | None = None, **kwargs: Any) -> Deployment:
    return deployment_execute(deployment_id=deployment_create_previous(**kwargs).pk, echo=echo)


def _released_on_crash(fn: Callable[P, R]) -> Callable[P, R]:
    """An unexpected error in this process (a bug, a lost database connection) leaves the
    deployment to recovery, as if its runner had died: in a long-lived worker the owner token
    would otherwise stay "alive" and block every takeover until the worker restarts."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (SelectionError, NothingInProgress, BusyError):
            raise  # expected refusals: the row already says what happened
        except BaseException:
            with contextlib.suppress(Exception):
                Deployment.objects.filter(owner=owner_token(), status=Deployment.Status.RUNNING).update(
                    owner=""
                )
            raise

    return wrapper


@_released_on_crash
def deployment_execute(*, deployment_id: int, echo: Echo | None = None) -> Deployment:
    """Inspect, select and run a queued deployment.

    Claiming is a conditional UPDATE (queued -> running): a redelivered or duplicated task
    message finds nothing to claim and returns the row as it is.
    """
    with transaction.atomic():
        claimed = Deployment.objects.filter(pk=deployment_id, status=Deployment.Status.QUEUED).update(
            status=Deployment.Status.RUNNING, owner=owner_token(), started_at=timezone.now()
        )
        if claimed == 1:
            journal_append(kind="deployment.started", actor=None, subject=f"deployment:{deployment_id}")
    deployment = Deployment.objects.select_related("manifest").get(pk=deployment_id)
    if claimed != 1:
        return deployment
    env = environment_load()
    desired = _desired_state_of(env, deployment.manifest)
    journal = DbJournal(deployment, echo=echo)
    try:
        plan = _plan(env, deployment, desired, journal)
        options = _machine_options(
            env,
            deployment,
            deployment.options.get("stop_before", ()),
            bool(deployment.options.get("exit_on_reboot")),
        )
        machine = Machine(plan=plan, runner=env.runner(), journal=journal, options=options)
        result = machine.run()
    finally:
        journal.close()
    return _deployment_finish(env, deployment, result, machine.state)


def _deployment_queue(
    env: Environment,
    desired: DesiredState,
    *,
    kind: str,
    options: dict[str, object],
    created_by: str,
    actor: Actor | None,
) -> Deployment:
    actor = actor or actor_of_command_line()  # the same actor on the row and in the journal
    try:
        with transaction.atomic():
            manifest = _manifest_snapshot(desired)
            # `slot` is unique: a second deployment in progress fails here, whoever races us.
            deployment = Deployment.objects.create(
                manifest=manifest,
                kind=kind,
                options=options,
                status=Deployment.Status.QUEUED,
                created_by=created_by,
                actor_kind=actor.kind,
                actor_name=actor.name,
            )
            deployment.work_dir = str(env.work_root / str(deployment.pk))
            deployment.save(update_fields=["work_dir"])
            journal_append(
                kind="deployment.created",
                actor=actor,
                subject=f"deployment:{deployment.pk}",
                data=_created_record(deployment, desired),
            )
    except IntegrityError:
        raise BusyError("another deployment is in progress: run `resume` or `rollback` first") from None
    return deployment


def _created_record(deployment: Deployment, desired: DesiredState) -> dict[str, object]:
    """What the journal keeps of a new deployment: the manifest from → to and the bundle."""
    pointers = selectors.active_manifests()
    active = pointers.active if pointers else None
    return {
        "kind": deployment.kind,
        "options": deployment.options,
        "manifest": _manifest_record(deployment.manifest),
        "from": _manifest_record(active) if active else None,
        "bundle": _bundle_record(desired.manifest.path),
    }


def _manifest_record(manifest: Manifest) -> dict[str, object]:
    return {"id": manifest.pk, "name": manifest.name, "sha256": manifest.sha256, "form": manifest.form}


def _bundle_record(manifest_path: Path) -> dict[str, object] | None:
    """The accepted bundle whose store directory holds the manifest (installs by bundle id or
    bundle file read it from there), with each artifact's digest and signer."""
    folders = [str(p) for p in Path(manifest_path).resolve().parents]
    bundle = Bundle.objects.filter(status=Bundle.Status.ACCEPTED, directory__in=folders).first()
    if bundle is None:
        return None
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
        topology=_topology_json(desired.topology),
    )


def _topology_json(topology: Topology) -> dict[str, Any]:
    return {
        "system_type": topology.system_type,
        "source": topology.source,
        "components": [
            {
                "component_type": c.component_type,
                "interface": c.interface,
                "interface_args": list(c.interface_args),
                "component_id": c.component_id,
            }
            for c in topology.components
        ],
    }


def _desired_state_of(env: Environment, manifest: Manifest) -> DesiredState:
    parsed, _ = parse_manifest(manifest.raw.encode(), path=Path(manifest.source_path))
    data = manifest.topology
    components = tuple(
        Component(
            component_type=c["component_type"],
            interface=c["interface"],
            interface_args=tuple(c["interface_args"]),
            component_id=c["component_id"],
        )
        for c in data["components"]
    )
    return DesiredState(parsed, Topology(data["system_type"], components, data["source"]))


def _plan(env: Environment, deployment: Deployment, desired: DesiredState, journal: DbJournal) -> Plan:
    inspector = Inspector(
        runner=env.runner(), journal=journal, workdir=Path(deployment.work_dir) / "_inspect"
    )
    try:
        inspected = inspector.inspect(desired.topology.components)
        plan = select(desired, inspected, keys=env.keys(), sources=artifact_sources(env))
    except SelectionError as exc:
        _deployment_reject(deployment, exc)
        raise
    components_record(inspected=inspected, system_type=desired.topology.system_type or "")
    deployment.plan = plan_as_json(plan)
    with transaction.atomic():
        deployment.save(update_fields=["plan"])
        journal_append(
            kind="deployment.planned",
            actor=None,
            subject=f"deployment:{deployment.pk}",
            data={"components": [_planned(c) for c in deployment.plan["components"]]},
        )
    return plan


def _planned(component: dict[str, Any]) -> dict[str, object]:
    return {k: component[k] for k in ("key", "component_type", "component_id", "action", "current", "target")}


def _deployment_reject(deployment: Deployment, exc: Exception) -> None:
    deployment.status = Deployment.Status.REJECTED
    deployment.reason = str(exc)
    deployment.finished_at = timezone.now()
    deployment.slot = None
    deployment.owner = ""
    with transaction.atomic():
        deployment.save(update_fields=["status", "reason", "finished_at", "slot", "owner"])
        _journal_outcome(deployment)


def _journal_outcome(deployment: Deployment) -> None:
    """`deployment.finished` when it ended (the head gets signed), `deployment.paused` when it
    stopped or waits for a reboot."""
    ended = deployment.finished_at is not None
    journal_append(
        kind="deployment.finished" if ended else "deployment.paused",
        actor=None,
        subject=f"deployment:{deployment.pk}",
        data={
            "status": deployment.status,
            "reason": deployment.reason,
            "components": list(deployment.components),
            "phase": deployment.position.get("phase", ""),
        },
    )


def _machine_options(
    env: Environment, deployment: Deployment, stop_before: Sequence[str], exit_on_reboot: bool
) -> Options:
    return Options(
        work_root=Path(deployment.work_dir),
        keys=env.keys(),
        stop_before=frozenset(stop_before),
        exit_on_reboot=exit_on_reboot,
        reboot_command=env.reboot_command,
        reboot_wait_seconds=env.reboot_wait_seconds,
    )


def _deployment_finish(
    env: Environment, deployment: Deployment, result: Result, state: RunState
) -> Deployment:
    with transaction.atomic():
        deployment.status = result.outcome
        deployment.reason = result.reason
        deployment.components = list(result.components)
        deployment.position = state.to_json()
        if result.outcome in ("succeeded", "rolled_back", "inconsistent"):
            deployment.finished_at = timezone.now()
            deployment.slot = None
        deployment.owner = ""
        deployment.save()
        if result.outcome == "succeeded":
            _activate(env, deployment.manifest)
        _journal_outcome(deployment)
    if result.outcome in ("succeeded", "rolled_back", "inconsistent"):
        _refresh_after(env, deployment)
        # Every component's tree went at its Cleanup; what remains (inspection scratch) goes now.
        shutil.rmtree(deployment.work_dir, ignore_errors=True)
        # Reference §5.3: trim the artifact store after each deployment, as `gc` does (keeps
        # what the active, previous and in-progress manifests need). Logs, never raises.
        store_retention_after_deployment(env)
        audit_prune_by_policy(actor=SYSTEM)
    return deployment


def _refresh_after(env: Environment, deployment: Deployment) -> None:
    topology = _desired_state_of(env, deployment.manifest).topology
    journal = DbJournal(deployment)
    try:
        components_refresh_quietly(
            env, components=topology.components, system_type=topology.system_type or "", journal=journal
        )
    finally:
        journal.close()


def _activate(env: Environment, manifest: Manifest) -> None:
    pointers, _ = ActiveManifests.objects.get_or_create(pk=1)
    if pointers.active_id != manifest.pk:
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


def plan_as_json(plan: Plan) -> dict[str, object]:
    return {
        "groups": [[order, list(keys)] for order, keys in plan.groups],
        "components": [
            {
                "key": t.key,
                "component_type": t.component.component_type,
                "component_id": t.component_id,
                "interface": t.component.interface,
                "order": t.order,
                "action": t.action,
                "current": t.current_version,
                "target": t.target_version,
                "artifact": str(t.artifact_path or ""),
                "interface_args": list(t.component.interface_args),
                "spec_id": t.component.component_id,
                "provides": t.current,
            }
            for t in plan.targets
        ],
    }


# ----- resume and rollback -----------------------------------------------------------------------


def deployment_resume(
    *,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    echo: Echo | None = None,
    actor: Actor | None = None,
) -> Deployment:
    """Continue the deployment in progress from its persisted position."""
    deployment = _in_progress_or_raise("resume")
    return _continue(
        deployment,
        stop_before=stop_before,
        exit_on_reboot=exit_on_reboot,
        echo=echo,
        rollback=False,
        actor=actor,
    )


def deployment_rollback(
    *,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    echo: Echo | None = None,
    actor: Actor | None = None,
) -> Deployment:
    """Roll back the deployment in progress (committed components included)."""
    deployment = _in_progress_or_raise("roll back")
    # Refuse before the takeover: a refused `rollback` must leave the row exactly as it was
    # (claiming it first left it "running" for a dead owner, which the next resume counted
    # as a crash).
    if deployment.position.get("phase") in ("cleanup", "done"):
        raise NothingInProgress("cleanup has started: the deployment can no longer be rolled back")
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
    actor: Actor | None,
) -> Deployment:
    if deployment.status == Deployment.Status.QUEUED:
        return deployment_execute(deployment_id=deployment.pk, echo=echo)
    request = {"stop_before": list(stop_before), "exit_on_reboot": exit_on_reboot}
    kind = "deployment.rollback" if rollback else "deployment.resumed"
    crashed = _deployment_takeover(deployment, journal=(kind, actor or actor_of_command_line(), request))
    if crashed:
        stop_leftover_calls(Path(deployment.work_dir))
    if not deployment.plan:
        return _deployment_close_untouched(deployment)
    env = environment_load()
    plan = plan_from_json(deployment.plan, keys=env.keys())
    state = RunState.from_json(deployment.position) if deployment.position else None
    journal = DbJournal(deployment, echo=echo)
    try:
        options = _machine_options(env, deployment, stop_before, exit_on_reboot)
        machine = Machine(plan=plan, runner=env.runner(), journal=journal, options=options, state=state)
        if crashed:
            _close_interrupted_steps(deployment)
            machine.recover_after_crash()
        if rollback:
            try:
                machine.request_rollback("rollback requested by the operator")
            except ValueError as exc:
                raise NothingInProgress(str(exc)) from None
        result = machine.run()
    finally:
        journal.close()
    return _deployment_finish(env, deployment, result, machine.state)


def _deployment_takeover(deployment: Deployment, *, journal: tuple[str, Actor, dict[str, object]]) -> bool:
    """Claim a deployment in progress for this process; True when its last runner died.

    The conditional UPDATE (on the owner we read) makes two resumers race safely: one wins.
    The journal records who asked (kind, actor, request) in the same transaction.
    """
    if deployment.status == Deployment.Status.RUNNING and owner_alive(deployment.owner):
        raise BusyError(f"deployment {deployment.pk} is being run by another process ({deployment.owner})")
    crashed = deployment.status == Deployment.Status.RUNNING
    kind, actor, request = journal
    with transaction.atomic():
        claimed = Deployment.objects.filter(
            pk=deployment.pk, owner=deployment.owner, status=deployment.status
        ).update(owner=owner_token(), status=Deployment.Status.RUNNING)
        if claimed != 1:
            raise BusyError(f"deployment {deployment.pk} was just claimed by another process")
        journal_append(
            kind=kind,
            actor=actor,
            subject=f"deployment:{deployment.pk}",
            data={**request, "status_before": deployment.status, "after_crash": crashed},
        )
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
    deployment.status = Deployment.Status.ROLLED_BACK
    deployment.reason = "interrupted before any component was touched; nothing to roll back"
    deployment.finished_at = timezone.now()
    deployment.slot = None
    deployment.owner = ""
    with transaction.atomic():
        deployment.save()
        _journal_outcome(deployment)
    return deployment


def plan_from_json(data: dict[str, Any], *, keys: Sequence[PublicKey]) -> Plan:
    """Rebuild the plan of a stored deployment; artifacts are re-read (and re-verified)."""
    targets = []
    for c in data.get("components", []):
        component = Component(
            component_type=c["component_type"],
            interface=c["interface"],
            interface_args=tuple(c["interface_args"]),
            component_id=c["spec_id"],
        )
        path = Path(c["artifact"]) if c["artifact"] else None
        info = read_artifact(path, keys=keys) if path and c["action"] == "install" else None
        targets.append(
            Target(
                key=c["key"],
                component=component,
                component_id=c["component_id"],
                order=c["order"],
                current=c["provides"],
                action=c["action"],
                artifact_path=path,
                artifact=info,
            )
        )
    groups = tuple((order, tuple(keys_)) for order, keys_ in data.get("groups", []))
    return Plan(targets=tuple(targets), groups=groups)
