"""Writes: every state change of a deployment goes through a function here.

The engine does the orchestration; these functions load inputs, claim the work, snapshot what
the run depends on, and keep the database rows (the source of truth) in step with it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from devices.selectors import component_list
from devices.services import components_record
from updates import selectors
from updates.claims import owner_alive, owner_token
from updates.engine.artifact import PublicKey, load_public_key, read_artifact
from updates.engine.config import OrchestratorConfig, load_config
from updates.engine.inspection import Inspector
from updates.engine.interface import InterfaceRunner
from updates.engine.machine import Machine, Options, Result, RunState
from updates.engine.manifest import (
    Component,
    DesiredState,
    InputError,
    load_desired_state,
    parse_manifest,
    parse_topology,
)
from updates.engine.planner import Inspected, Plan, SelectionError, Target, describe_version, select
from updates.engine.preview import preview_answers
from updates.journal import DbJournal
from updates.models import ActiveManifests, Deployment, Manifest

Echo = Callable[[str], None]


class BusyError(Exception):
    """Another deployment is in progress; nothing was touched."""


class NothingInProgress(Exception):
    """`resume`/`rollback` with no deployment in progress."""


@dataclass(frozen=True)
class Environment:
    """The appliance's paths and knobs, from settings (env-driven) and mender-orchestrator.conf."""

    datastore: Path
    data_dir: Path
    topology_dir: Path
    config: OrchestratorConfig
    reboot_command: tuple[str, ...]

    @property
    def work_root(self) -> Path:
        return self.datastore / "work"

    @property
    def manifest_store(self) -> Path:
        return self.datastore / "manifests"

    def keys(self) -> list[PublicKey]:
        return [load_public_key(path) for path in self.config.verify_keys]

    def runner(self) -> InterfaceRunner:
        return InterfaceRunner(data_dir=self.data_dir, timeout=self.config.interface_timeout_seconds)


def environment_load() -> Environment:
    datastore = Path(settings.DATASTORE_DIR)
    return Environment(
        datastore=datastore,
        data_dir=Path(settings.DATA_DIR),
        topology_dir=Path(settings.TOPOLOGY_DIR),
        config=load_config(Path(settings.CONF_DIR), datastore),
        reboot_command=tuple(shlex.split(settings.REBOOT_COMMAND)),
    )


def desired_state_load(
    env: Environment, *, manifest_path: Path, topology_components: Path | None, manifest_data: bytes | None = None
) -> DesiredState:
    components = topology_components or _env_topology_components() or env.config.topology_components
    return load_desired_state(
        manifest_path.resolve(),
        topology_dir=env.topology_dir,
        topology_components=components,
        manifest_data=manifest_data,
    )


def _env_topology_components() -> Path | None:
    value = settings.TOPOLOGY_COMPONENTS_FILE
    return Path(value) if value else None


# ----- install ---------------------------------------------------------------------------------


def deployment_install(
    *,
    manifest_path: Path,
    topology_components: Path | None = None,
    stop_before: Sequence[str] = (),
    exit_on_reboot: bool = False,
    echo: Echo | None = None,
) -> Deployment:
    """Validate, plan and apply a manifest. Raises InputError/SelectionError (nothing touched)
    and BusyError; returns the finished (or stopped) deployment otherwise."""
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    return _install(
        env, desired, kind="install", stop_before=stop_before, exit_on_reboot=exit_on_reboot, echo=echo
    )


def deployment_install_previous(
    *, stop_before: Sequence[str] = (), exit_on_reboot: bool = False, echo: Echo | None = None
) -> Deployment:
    """Re-apply the previous manifest: "go back to the last known good system"."""
    env = environment_load()
    pointers = ActiveManifests.objects.filter(pk=1).select_related("previous").first()
    if pointers is None or pointers.previous is None:
        raise NothingInProgress("there is no previous manifest to go back to")
    previous = pointers.previous
    desired = desired_state_load(
        env, manifest_path=Path(previous.source_path), topology_components=None, manifest_data=previous.raw.encode()
    )
    return _install(
        env, desired, kind="previous", stop_before=stop_before, exit_on_reboot=exit_on_reboot, echo=echo
    )


def _install(
    env: Environment,
    desired: DesiredState,
    *,
    kind: str,
    stop_before: Sequence[str],
    exit_on_reboot: bool,
    echo: Echo | None,
) -> Deployment:
    deployment = _deployment_claim(env, desired, kind=kind, options={"stop_before": list(stop_before)})
    journal = DbJournal(deployment, echo=echo)
    try:
        plan = _plan(env, deployment, desired, journal)
        if plan is None:
            return deployment
        options = _machine_options(env, deployment, stop_before, exit_on_reboot)
        machine = Machine(plan=plan, runner=env.runner(), journal=journal, options=options)
        result = machine.run()
    finally:
        journal.close()
    return _deployment_finish(env, deployment, result, plan, machine.state)


def _deployment_claim(
    env: Environment, desired: DesiredState, *, kind: str, options: dict[str, object]
) -> Deployment:
    try:
        with transaction.atomic():
            manifest = _manifest_snapshot(env, desired)
            # `slot` is unique: a second deployment in progress fails here, whoever races us.
            deployment = Deployment.objects.create(
                manifest=manifest, kind=kind, options=options, started_at=timezone.now(), owner=owner_token()
            )
    except IntegrityError:
        raise BusyError("another deployment is in progress: run `resume` or `rollback` first") from None
    deployment.work_dir = str(env.work_root / str(deployment.pk))
    deployment.save(update_fields=["work_dir"])
    return deployment


def _manifest_snapshot(env: Environment, desired: DesiredState) -> Manifest:
    raw = desired.manifest.raw
    digest = hashlib.sha256(raw).hexdigest()
    store = env.manifest_store / "snapshots"
    store.mkdir(parents=True, exist_ok=True)
    # Kept next to nothing else: relative artifact paths are resolved from the original
    # manifest's directory, which `source_path` records.
    manifest = Manifest.objects.create(
        name=desired.manifest.name,
        form=desired.manifest.form,
        sha256=digest,
        raw=raw.decode("utf-8", "replace"),
        source_path=str(desired.manifest.path),
        topology_raw=desired.topology.source,
    )
    return manifest


def _plan(env: Environment, deployment: Deployment, desired: DesiredState, journal: DbJournal) -> Plan | None:
    inspector = Inspector(
        runner=env.runner(), journal=journal, workdir=Path(deployment.work_dir) / "_inspect"
    )
    try:
        inspected = inspector.inspect(desired.topology.components)
        plan = select(desired, inspected, keys=env.keys())
    except SelectionError as exc:
        _deployment_reject(deployment, exc)
        raise
    components_record(inspected=inspected, system_type=desired.topology.system_type or "")
    deployment.plan = plan_as_json(plan)
    deployment.save(update_fields=["plan"])
    return plan


def _deployment_reject(deployment: Deployment, exc: Exception) -> None:
    deployment.status = Deployment.Status.REJECTED
    deployment.reason = str(exc)
    deployment.finished_at = timezone.now()
    deployment.slot = None
    deployment.owner = ""
    deployment.save(update_fields=["status", "reason", "finished_at", "slot", "owner"])


def _machine_options(
    env: Environment, deployment: Deployment, stop_before: Sequence[str], exit_on_reboot: bool
) -> Options:
    return Options(
        work_root=Path(deployment.work_dir),
        keys=env.keys(),
        stop_before=frozenset(stop_before),
        exit_on_reboot=exit_on_reboot,
        reboot_command=env.reboot_command,
    )


def _deployment_finish(
    env: Environment, deployment: Deployment, result: Result, plan: Plan, state: RunState
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
    return deployment


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
    *, stop_before: Sequence[str] = (), exit_on_reboot: bool = False, echo: Echo | None = None
) -> Deployment:
    """Continue the deployment in progress from its persisted position."""
    deployment = _in_progress_or_raise("resume")
    return _continue(
        deployment, stop_before=stop_before, exit_on_reboot=exit_on_reboot, echo=echo, rollback=False
    )


def deployment_rollback(
    *, stop_before: Sequence[str] = (), exit_on_reboot: bool = False, echo: Echo | None = None
) -> Deployment:
    """Roll back the deployment in progress (committed components included)."""
    deployment = _in_progress_or_raise("roll back")
    return _continue(
        deployment, stop_before=stop_before, exit_on_reboot=exit_on_reboot, echo=echo, rollback=True
    )


def _in_progress_or_raise(verb: str) -> Deployment:
    deployment = selectors.deployment_in_progress()
    if deployment is None:
        raise NothingInProgress(f"no deployment in progress: nothing to {verb}")
    return deployment


def _continue(
    deployment: Deployment,
    *,
    stop_before: Sequence[str],
    exit_on_reboot: bool,
    echo: Echo | None,
    rollback: bool,
) -> Deployment:
    crashed = _deployment_takeover(deployment)
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
    return _deployment_finish(env, deployment, result, plan, machine.state)


def _deployment_takeover(deployment: Deployment) -> bool:
    """Claim a deployment in progress for this process; True when its last runner died.

    The conditional UPDATE (on the owner we read) makes two resumers race safely: one wins.
    """
    if deployment.status == Deployment.Status.RUNNING and owner_alive(deployment.owner):
        raise BusyError(f"deployment {deployment.pk} is being run by another process ({deployment.owner})")
    crashed = deployment.status == Deployment.Status.RUNNING
    claimed = Deployment.objects.filter(
        pk=deployment.pk, owner=deployment.owner, status=deployment.status
    ).update(owner=owner_token(), status=Deployment.Status.RUNNING)
    if claimed != 1:
        raise BusyError(f"deployment {deployment.pk} was just claimed by another process")
    deployment.refresh_from_db()
    return crashed


def _close_interrupted_steps(deployment: Deployment) -> None:
    """Calls that were running when the process died: recorded as interrupted, never as done."""
    deployment.steps.filter(ended_at__isnull=True).update(
        ended_at=timezone.now(), error="interrupted: the orchestrator stopped during this call"
    )


def _deployment_close_untouched(deployment: Deployment) -> Deployment:
    _close_interrupted_steps(deployment)
    deployment.status = Deployment.Status.ROLLED_BACK
    deployment.reason = "interrupted before any component was touched; nothing to roll back"
    deployment.finished_at = timezone.now()
    deployment.slot = None
    deployment.owner = ""
    deployment.save()
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


# ----- dry run, status, history, provides ------------------------------------------------------


def plan_preview(*, manifest_path: Path, topology_components: Path | None = None) -> dict[str, Any]:
    """What `install` would do, without touching anything (queries only)."""
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    with tempfile.TemporaryDirectory(prefix="orch-plan-") as tmp:
        journal = NullJournal()
        inspected = Inspector(runner=env.runner(), journal=journal, workdir=Path(tmp) / "_inspect").inspect(
            desired.topology.components
        )
        plan = select(desired, inspected, keys=env.keys())
        report = plan_as_json(plan)
        for entry, target in zip(report["components"], plan.targets, strict=True):  # type: ignore[call-overload]
            if target.action == "install":
                entry.update(preview_answers(env.runner(), target, Path(tmp)))
    report.update(manifest=desired.manifest.name, form=desired.manifest.form)
    return report


def status_report() -> dict[str, Any]:
    pointers = selectors.active_manifests()
    running = selectors.deployment_in_progress()
    return {
        "manifests": {
            "active": pointers.active.name if pointers and pointers.active else None,
            "previous": pointers.previous.name if pointers and pointers.previous else None,
        },
        "components": [
            {"key": c.key, "version": c.version, "provides": c.provides, "refreshed_at": c.refreshed_at}
            for c in component_list()
        ],
        "in_progress": (
            {
                "id": running.pk,
                "status": running.status,
                "reason": running.reason,
                "position": running.position,
            }
            if running
            else None
        ),
    }


def history_report(*, limit: int = 50) -> list[dict[str, Any]]:
    return [
        {
            "id": d.pk,
            "manifest": d.manifest.name,
            "kind": d.kind,
            "status": d.status,
            "reason": d.reason,
            "components": d.components,
            "created_at": d.created_at,
            "finished_at": d.finished_at,
            "steps": [
                {
                    "component": s.component,
                    "state": s.state,
                    "argv": s.argv,
                    "started_at": s.started_at,
                    "ended_at": s.ended_at,
                    "exit_code": s.exit_code,
                    "answer": s.answer,
                    "error": s.error,
                    "ok": s.ok,
                    "stderr": s.stderr,
                }
                for s in selectors.deployment_steps(d)
            ],
        }
        for d in selectors.deployment_list(limit=limit)
    ]


def provides_lines() -> list[str]:
    """`<component_type>.<component_id>.<key>=<value>` for every component, asked live."""
    lines = []
    for item in _inspect_live():
        lines.extend(f"{item.key}.{k}={v}" for k, v in sorted(item.provides.items()))
    return lines


def inventory_lines() -> list[str]:
    env = environment_load()
    lines = []
    with tempfile.TemporaryDirectory(prefix="orch-inv-") as tmp:
        inspector = Inspector(runner=env.runner(), journal=NullJournal(), workdir=Path(tmp))
        for item in _inspect_live():
            lines.append(
                f"mender-orchestrator-manifest.{item.key}.component_type={item.component.component_type}"
            )
            lines.append(
                f"mender-orchestrator-manifest.{item.key}.version={describe_version(item.provides, item.component.interface)}"
            )
            for key, values in sorted(inspector.inventory(item.component, item.component_id).items()):
                lines.extend(f"{item.key}.{key}={v}" for v in values)
    return lines


def _inspect_live() -> list[Inspected]:
    env = environment_load()
    components = current_components(env)
    with tempfile.TemporaryDirectory(prefix="orch-show-") as tmp:
        return Inspector(runner=env.runner(), journal=NullJournal(), workdir=Path(tmp)).inspect(components)


def current_components(env: Environment) -> tuple[Component, ...]:
    """The topology on disk; for a seed-form system, the components of the active manifest."""
    topology = env.topology_dir / "topology.yaml"
    if topology.is_file():
        components_file = _env_topology_components() or env.config.topology_components
        return parse_topology(
            topology.read_bytes(),
            path=topology,
            components_data=components_file.read_bytes() if components_file else None,
            components_path=components_file,
        ).components
    pointers = selectors.active_manifests()
    if pointers and pointers.active and pointers.active.form == "seed":
        _, components = parse_manifest(pointers.active.raw.encode(), path=Path(pointers.active.source_path))
        return components or ()
    raise SelectionError([f"no topology: {topology} does not exist and no seed-form manifest is active"])


class NullJournal:
    """For dry runs and live queries that are not part of a deployment."""

    def checkpoint(self, state: RunState) -> None:
        return None

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int:
        return 0

    def call_finished(self, step: int, **kwargs: object) -> None:
        return None


__all__ = [
    "BusyError",
    "InputError",
    "NothingInProgress",
    "RunState",
    "SelectionError",
    "deployment_install",
    "deployment_install_previous",
]
