"""Reads: status and history, straight from the database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db.models import QuerySet

from devices.selectors import component_list
from updates.engine.constraints import Constraints, constraints_file, constraints_from_manifest
from updates.engine.manifest import InputError
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
    pointers = active_manifests()
    running = deployment_in_progress()
    return {
        "system": system_version().as_json(),
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
            "forced_by": d.forced_by,
            "forced_reason": d.forced_reason,
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
                for s in deployment_steps(d)
            ],
        }
        for d in deployment_list(limit=limit)
    ]


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
