"""Reads: status and history, straight from the database rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncWeek
from django.utils import timezone

from devices.models import System
from devices.selectors import component_list
from updates.engine.artifact import ArtifactError, key_fingerprint, load_public_key
from updates.engine.interface import QUERY_STATES
from updates.models import ActiveManifests, Bundle, BundleArtifact, Deployment, Manifest, Step


def deployment_in_progress() -> Deployment | None:
    return Deployment.objects.filter(status__in=Deployment.IN_PROGRESS).order_by("-id").first()


def deployment_list(*, limit: int = 50) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").order_by("-id")[:limit]


def deployment_steps(deployment: Deployment) -> QuerySet[Step]:
    return deployment.steps.order_by("id")


def active_manifests() -> ActiveManifests | None:
    return ActiveManifests.objects.select_related("active", "previous").filter(pk=1).first()


def status_report() -> dict[str, Any]:
    pointers = active_manifests()
    running = deployment_in_progress()
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


# ----- pages and reports (web UI issue #10; shaped so the REST API can return the same dicts) ----

# Mender states of the rollback path: drawn amber on the timeline, whatever their exit code.
ROLLBACK_STATES = frozenset(
    {"ArtifactRollback", "ArtifactRollbackReboot", "ArtifactVerifyRollbackReboot", "ArtifactFailure"}
)
# What a deployment's run position records per component, in the order it happens.
MILESTONES = ("entered", "downloaded", "install_started", "committed", "cleaned")


def system_overview() -> dict[str, Any]:
    """The System page: components grouped by the update order of the active manifest."""
    pointers = active_manifests()
    active = pointers.active if pointers else None
    orders = _component_orders(active)
    groups: dict[int | None, list[Any]] = {}
    for component in component_list():
        groups.setdefault(orders.get(component.key), []).append(component)
    running = deployment_in_progress()
    return {
        "system": System.objects.filter(pk=1).first(),
        "groups": sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or 0)),
        "active": active,
        "previous": pointers.previous if pointers else None,
        "in_progress": running,
        "progress": deployment_progress(running) if running else 0,
    }


def _component_orders(manifest: Manifest | None) -> dict[str, int]:
    """`update_strategy.order` per component key, from the plan the active manifest ran with."""
    if manifest is None:
        return {}
    last = Deployment.objects.filter(manifest=manifest).exclude(plan={}).order_by("-id").first()
    components = last.plan.get("components", []) if last else []
    return {c["key"]: int(c["order"]) for c in components}


def deployment_progress(deployment: Deployment) -> int:
    """Percent of the installing components' milestones reached (100 once it has ended)."""
    if deployment.status not in Deployment.IN_PROGRESS:
        return 100
    installing = [c["key"] for c in deployment.plan.get("components", []) if c.get("action") == "install"]
    if not installing:
        return 0
    progress = (deployment.position or {}).get("progress", {})
    reached = sum(bool(progress.get(key, {}).get(m)) for key in installing for m in MILESTONES)
    return round(100 * reached / (len(installing) * len(MILESTONES)))


def deployment_get(*, deployment_id: int) -> Deployment | None:
    return Deployment.objects.select_related("manifest").filter(pk=deployment_id).first()


def step_status(step: Step) -> str:
    """One word per block of the timeline: running, failed, rollback, query or done."""
    if step.ended_at is None:
        return "running"
    if step.state in ROLLBACK_STATES:
        return "rollback"
    if not step.ok:
        return "failed"
    return "query" if step.state in QUERY_STATES else "done"


def deployment_timeline(deployment: Deployment) -> list[dict[str, Any]]:
    """Order groups as lanes, components as rows, the component's steps (state calls) as blocks."""
    components = deployment.plan.get("components", [])
    # Before Identity answers, the journal names a component by its interface args.
    alias = {f"{c['component_type']}[{' '.join(c['interface_args'])}]": c["key"] for c in components}
    steps: dict[str, list[dict[str, Any]]] = {}
    for step in deployment_steps(deployment):
        steps.setdefault(alias.get(step.component, step.component), []).append(step_summary(step))
    lanes: dict[int, list[dict[str, Any]]] = {}
    for component in components:
        row = {**component, "steps": steps.pop(component["key"], [])}
        lanes.setdefault(int(component["order"]), []).append(row)
    out: list[dict[str, Any]] = [{"order": order, "components": rows} for order, rows in sorted(lanes.items())]
    if steps:  # calls of a run refused before its plan existed
        rows = [{"key": key, "action": "query", "steps": s} for key, s in steps.items()]
        out.insert(0, {"order": None, "components": rows})
    return out


def step_summary(step: Step) -> dict[str, Any]:
    return {
        "id": step.pk,
        "component": step.component,
        "state": step.state,
        "status": step_status(step),
        "argv": step.argv,
        "exit_code": step.exit_code,
        "started_at": step.started_at,
        "ended_at": step.ended_at,
        "duration": (step.ended_at - step.started_at).total_seconds() if step.ended_at else None,
        "error": step.error,
        "stdout": step.stdout,
        "stderr": step.stderr,
    }


def deployment_filter(
    *,
    status: str = "",
    since: date | None = None,
    until: date | None = None,
    manifest: str = "",
    created_by: str = "",
) -> QuerySet[Deployment]:
    """Deployments, newest first; `until` is inclusive (the whole day)."""
    qs = Deployment.objects.select_related("manifest").order_by("-id")
    if status:
        qs = qs.filter(status=status)
    if since:
        qs = qs.filter(created_at__date__gte=since)
    if until:
        qs = qs.filter(created_at__date__lte=until)
    if manifest:
        qs = qs.filter(manifest__name__icontains=manifest)
    if created_by:
        qs = qs.filter(created_by=created_by)
    return qs


def manifest_before(deployment: Deployment) -> str:
    """The manifest the system ran when this deployment started: the last success before it."""
    earlier = (
        Deployment.objects.filter(pk__lt=deployment.pk, status=Deployment.Status.SUCCEEDED)
        .select_related("manifest")
        .order_by("-id")
        .first()
    )
    return earlier.manifest.name if earlier else ""


def deployment_row(deployment: Deployment, *, before: str) -> dict[str, Any]:
    """One line of the history and the audit: who, from → to, outcome, start and duration."""
    end = deployment.finished_at
    start = deployment.started_at or deployment.created_at
    return {
        "id": deployment.pk,
        "created_at": deployment.created_at,
        "created_by": deployment.created_by,
        "kind": deployment.kind,
        "manifest_from": before,
        "manifest_to": deployment.manifest.name,
        "status": deployment.status,
        "reason": deployment.reason,
        "started_at": start,
        "duration": (end - start).total_seconds() if end else None,
    }


def deployment_rows(deployments: Sequence[Deployment]) -> list[dict[str, Any]]:
    """History rows for a page of deployments; one query for all their "from" manifests."""
    if not deployments:
        return []
    succeeded = Deployment.objects.filter(status=Deployment.Status.SUCCEEDED).order_by("-id")
    # Successes between the page's newest row and the last one below its oldest: two queries.
    floor = succeeded.filter(pk__lt=min(d.pk for d in deployments)).values_list("pk", flat=True).first()
    successes = list(
        succeeded.filter(pk__gte=floor or 0, pk__lt=max(d.pk for d in deployments)).values_list(
            "pk", "manifest__name"
        )
    )
    rows = []
    for d in deployments:
        before = next((name for pk, name in successes if pk < d.pk), "")
        rows.append(deployment_row(d, before=before))
    return rows


def deployments_per_week(*, weeks: int = 12, today: date | None = None) -> list[dict[str, Any]]:
    """Counts per ISO week (Monday first) and final outcome, oldest week first, empty weeks kept."""
    today = today or timezone.now().date()
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    counts = (
        Deployment.objects.filter(created_at__date__gte=first)
        .annotate(week=TruncWeek("created_at"))
        .values("week", "status")
        .annotate(n=Count("id"))
    )
    table = {first + timedelta(weeks=i): dict.fromkeys(CHART_OUTCOMES, 0) for i in range(weeks)}
    for row in counts:
        outcome = row["status"] if row["status"] in CHART_OUTCOMES else "other"
        table[row["week"].date()][outcome] += row["n"]
    return [{"week": week, "counts": c, "total": sum(c.values())} for week, c in table.items()]


CHART_OUTCOMES = ("succeeded", "rolled_back", "inconsistent", "rejected", "other")


def audit_rows(*, since: date | None = None, until: date | None = None) -> list[dict[str, Any]]:
    """One row per finished deployment in the period, oldest first, with every component's
    version before and after and every step (the printable report shows them; CSV drops them)."""
    deployments = list(
        deployment_filter(since=since, until=until).exclude(status__in=Deployment.IN_PROGRESS).order_by("id")
    )
    rows = []
    for deployment, row in zip(deployments, deployment_rows(deployments), strict=True):
        row["versions"] = _versions(deployment)
        row["steps"] = [step_summary(s) for s in deployment_steps(deployment)]
        rows.append(row)
    return rows


def _versions(deployment: Deployment) -> list[dict[str, str]]:
    succeeded = deployment.status == Deployment.Status.SUCCEEDED
    return [
        {
            "component": c["key"],
            "before": c.get("current") or "",
            "after": (c.get("target") if succeeded else c.get("current")) or "",
        }
        for c in deployment.plan.get("components", [])
    ]


def plan_groups(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan (`plan --json` shape) as order groups of components, for the bundle page."""
    components = {c["key"]: c for c in plan.get("components", [])}
    return [{"order": order, "components": [components[k] for k in keys]} for order, keys in plan.get("groups", [])]


def step_get(*, deployment_id: int, step_id: int) -> Step | None:
    return Step.objects.filter(deployment_id=deployment_id, pk=step_id).first()


def trusted_keys() -> list[dict[str, str]]:
    """The configured `ArtifactVerifyKey(s)`: path and sha256 fingerprint (or why it is unreadable)."""
    # Imported here: updates.services imports this module (a cycle at import time).
    from updates.services.environment import environment_load

    rows = []
    for path in environment_load().config.verify_keys:
        try:
            rows.append({"path": str(path), "fingerprint": key_fingerprint(load_public_key(path)), "error": ""})
        except (OSError, ValueError, ArtifactError) as exc:
            rows.append({"path": str(path), "fingerprint": "", "error": str(exc)})
    return rows
