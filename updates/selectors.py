"""Reads: status and history, straight from the database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db.models import QuerySet

from devices.selectors import component_list
from updates.claims import owner_alive
from updates.engine.constraints import Constraints, constraints_file, constraints_from_manifest
from updates.engine.interface import QUERY_STATES
from updates.engine.manifest import InputError
from updates.engine.planner import TargetJson
from updates.heartbeat import WorkerBeat as WorkerBeat
from updates.heartbeat import live_workers as live_workers  # re-exported: workers that answer
from updates.models import ActiveManifests, Bundle, BundleArtifact, Deployment, Step


def deployment_in_progress() -> Deployment | None:
    return Deployment.objects.filter(status__in=Deployment.IN_PROGRESS).order_by("-id").first()


def deployment_list(*, limit: int = 50) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").order_by("-id")[:limit]


def deployment_steps(deployment: Deployment) -> QuerySet[Step]:
    return deployment.steps.order_by("id")


def active_manifests() -> ActiveManifests | None:
    return ActiveManifests.objects.select_related("active", "previous").filter(pk=1).first()


@dataclass(frozen=True)
class SystemVersion:
    """Which declared working system the components' last known versions form (issue 13).

    `state`: "working" (an end state matches: `system_version` names it), "outside" (none
    matches), "undeclared" (no constraints document), "invalid" (the document has errors) or
    "unknown" (no component versions recorded yet). `message` is the line `status` prints.
    """

    state: Literal["working", "outside", "undeclared", "invalid", "unknown"]
    message: str
    system_version: str | None = None
    row: str | None = None
    line: int | None = None
    constraints_file: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


def system_version() -> SystemVersion:
    """The system version shown by `status`, the API's `/system` and the UI's System page."""
    components = list(component_list())
    versions = {c.key: c.version for c in components}
    try:
        constraints = _active_constraints()
    except InputError as exc:
        return SystemVersion("invalid", f"the constraints document has errors:\n{exc}", versions=versions)
    if constraints is None:
        return SystemVersion("undeclared", "no constraints declared (constraints.yaml)", versions=versions)
    if not versions:
        return SystemVersion("unknown", "no component versions known yet", constraints_file=constraints.file)
    row = constraints.end_state([(c.component_type, c.version) for c in components])
    if row is None:
        message = "outside every declared working state (no end_states row matches)"
        return SystemVersion("outside", message, constraints_file=constraints.file, versions=versions)
    return SystemVersion(
        "working",
        f"system {row.system_version}",
        system_version=row.system_version,
        row=row.where,
        line=row.line,
        constraints_file=constraints.file,
        versions=versions,
    )


def _active_constraints() -> Constraints | None:
    """As for a deployment: the active manifest's section wins over constraints.yaml."""
    pointers = active_manifests()
    active = pointers.active if pointers else None
    if active is not None:
        section = constraints_from_manifest(active.raw.encode(), path=Path(active.source_path))
        if section is not None:
            return section
    return constraints_file(Path(settings.TOPOLOGY_DIR))


def status_report() -> dict[str, Any]:
    """What runs now, what is in flight, and how the last deployment ended."""
    pointers = active_manifests()
    running = deployment_in_progress()
    last = Deployment.objects.select_related("manifest").filter(status__in=Deployment.TERMINAL).first()
    flight = {o["key"]: o for o in deployment_components(running)} if running else {}
    return {
        "system": system_version().as_json(),
        "manifests": {
            "active": pointers.active.name if pointers and pointers.active else None,
            "previous": pointers.previous.name if pointers and pointers.previous else None,
        },
        "components": [
            {
                "key": c.key,
                "version": c.version,
                "provides": c.provides,
                "refreshed_at": c.refreshed_at,
                # What it runs as far as we know: during a paused deployment the new, uncommitted one.
                "running": flight[c.key]["version"] if c.key in flight else c.version,
                "uncommitted": bool(flight.get(c.key, {}).get("uncommitted")),
                "drifted": c.drifted,
            }
            for c in component_list()
        ],
        "in_progress": (
            {
                "id": running.pk,
                "status": running.status,
                "reason": running.reason,
                "position": running.position,
                "manifest": running.manifest.name,
                "owner_alive": owner_alive(running.owner),
                "started_at": running.started_at,
            }
            if running
            else None
        ),
        "last": _summary(last) if last else None,
    }


def history_report(*, limit: int = 50, deployment_id: int | None = None) -> list[dict[str, Any]]:
    """Past deployments, newest first, each with every interface call (`history --json`)."""
    deployments = deployment_list(limit=limit) if deployment_id is None else deployment_get(deployment_id)
    return [{**_summary(d), "steps": [_step(s) for s in deployment_steps(d)]} for d in deployments]


def deployment_get(deployment_id: int) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").filter(pk=deployment_id)


def _summary(d: Deployment) -> dict[str, Any]:
    """One deployment in a line's worth of fields: who, what, from -> to, how it ended."""
    return {
        "id": d.pk,
        "manifest": d.manifest.name,
        "kind": d.kind,
        "status": d.status,
        "reason": d.reason,
        "components": d.components,
        "created_by": d.created_by,
        "forced_by": d.forced_by,
        "forced_reason": d.forced_reason,
        "created_at": d.created_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "outcomes": deployment_components(d),
    }


def _step(s: Step) -> dict[str, Any]:
    return {
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


# ----- what happened to each component -----------------------------------------------------------


def deployment_components(deployment: Deployment) -> list[dict[str, Any]]:
    """Per planned component: what happened (installed, rolled back, failed in STATE, skipped, …)
    and the version it runs now as far as the records tell."""
    plan = deployment.planned()
    if plan is None:
        return []
    progress: dict[str, dict[str, Any]] = deployment.position.get("progress", {})
    failed = _failed_states(deployment)
    answers = {c.key: c for c in component_list()} if _is_latest_finished(deployment) else {}
    outcomes = []
    for target in plan["components"]:
        key = target["key"]
        what, version, uncommitted = _outcome(target, progress.get(key), deployment.status, failed.get(key))
        refreshed = answers[key].refreshed_at if key in answers else None
        if refreshed and deployment.finished_at and refreshed >= deployment.finished_at:
            version = answers[key].version  # its own answer after the end beats our deduction
        outcomes.append(
            {
                "key": key,
                "outcome": what,
                "from": target["current"],
                "to": target["target"],
                "version": version,
                "uncommitted": uncommitted,
                "failed_in": failed.get(key),
            }
        )
    return outcomes


def _is_latest_finished(deployment: Deployment) -> bool:
    """Only the last deployment's components still run what it left (later ones changed them)."""
    if deployment.status not in Deployment.TERMINAL:
        return False
    return Deployment.objects.order_by("-id").values_list("pk", flat=True).first() == deployment.pk


def _failed_states(deployment: Deployment) -> dict[str, str]:
    """The first update state (not a query) that failed, per component."""
    failed: dict[str, str] = {}
    for step in deployment_steps(deployment).exclude(state__in=QUERY_STATES):
        if not step.ok and step.ended_at is not None:
            failed.setdefault(step.component, step.state)
    return failed


def _outcome(
    target: TargetJson, progress: dict[str, Any] | None, status: str, failed_in: str | None
) -> tuple[str, str, bool]:
    """(what happened, the version it runs, whether that version is uncommitted)."""
    old, new = target["current"], target["target"]
    if target["action"] == "skip":
        return f"skipped (already {old})", old, False
    p = progress or {}
    failure = f"failed in {failed_in}, " if failed_in else ""
    if not p.get("install_started"):
        if status in Deployment.IN_PROGRESS:
            return ("downloaded, not installed yet" if p.get("downloaded") else "not started yet"), old, False
        return (f"failed in {failed_in}, not installed" if failed_in else "not installed"), old, False
    if p.get("rollback_ran") or p.get("rollback_ok"):
        if p.get("rollback_ok"):
            return f"{failure}rolled back", old, False
        return f"{failure}rollback FAILED", "unknown", False
    if status == Deployment.Status.SUCCEEDED or (p.get("committed") and status not in Deployment.IN_PROGRESS):
        return "installed", new, False
    if status in Deployment.IN_PROGRESS:
        if p.get("committed"):
            return "committed", new, False
        return f"{failure}installed, not committed", new, True
    return f"{failure}NOT rolled back", "unknown", False


# ----- bundles and the artifact store (issue #5) ---------------------------------------------------


def bundle_list(*, limit: int = 50) -> QuerySet[Bundle]:
    return Bundle.objects.order_by("-id")[:limit]


def bundle_get(*, bundle_id: int) -> Bundle | None:
    return Bundle.objects.filter(pk=bundle_id).first()


def bundle_artifacts(bundle: Bundle) -> QuerySet[BundleArtifact]:
    return bundle.artifacts.select_related("artifact").order_by("id")


def bundle_report(bundle: Bundle) -> dict[str, Any]:
    return {
        "id": bundle.pk,
        "status": bundle.status,
        "form": bundle.form,
        "filename": bundle.filename,
        "sha256": bundle.sha256,
        "size": bundle.size,
        "manifest": bundle.manifest_name,
        "manifest_member": bundle.manifest_member,
        "directory": bundle.directory,
        "created_by": bundle.created_by,
        "created_at": bundle.created_at,
        "checks": bundle.checks,
        "problems": bundle.problems,
        "artifacts": [
            {
                "member": ba.member,
                "name": ba.artifact.name,
                "sha256": ba.artifact.sha256,
                "size": ba.artifact.size,
                "device_types": ba.artifact.device_types,
                "signed": ba.artifact.signed,
                "signer_fingerprint": ba.artifact.signer_fingerprint,
                "component_types": ba.component_types,
            }
            for ba in bundle_artifacts(bundle)
        ],
    }
