"""Reads: status and history, straight from the database rows.

One module per entity, each with its typed output shapes: `deployments` (the list, a page, one
deployment: summary, detail, rows, history, what happened to each component), `steps`,
`system` (status, `/system`, the System page, the system version, trusted keys), `bundles`,
`history` (the chart). This package re-exports their public functions (`__all__`), so callers
keep writing `selectors.deployment_detail(...)`. The recovery decision a starting worker acts
on is `updates/recovery.py`. The audit and webhook reads below stay here for now.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet

from updates.liveness import WorkerBeat, live_workers
from updates.models import Bundle, BundleArtifact, Deployment, Step, WebhookEvent
from updates.selectors.actors import _actor
from updates.selectors.bundles import (
    BundleReport,
    BundleSummary,
    PlanOverview,
    bundle_artifacts,
    bundle_get,
    bundle_list,
    bundle_page,
    bundle_report,
    bundle_summary,
    plan_overview,
)
from updates.selectors.deployments import (
    DeploymentDetail,
    DeploymentFilter,
    DeploymentHistory,
    DeploymentRecord,
    DeploymentRow,
    DeploymentSummary,
    DeploymentTimeline,
    OutcomeReport,
    _outcome,
    deployment_components,
    deployment_detail,
    deployment_find,
    deployment_get,
    deployment_in_progress,
    deployment_last_finished,
    deployment_list,
    deployment_page,
    deployment_progress,
    deployment_record,
    deployment_rows,
    deployment_status,
    deployment_summary,
    deployment_timeline,
    deployment_waits,
    history_report,
)
from updates.selectors.history import CHART_OUTCOMES, WeekCount, deployments_per_week
from updates.selectors.steps import (
    ROLLBACK_STATES,
    TAIL,
    StepRecord,
    StepReport,
    deployment_steps,
    step_events_after,
    step_get,
    step_record,
    step_report,
    step_status,
)
from updates.selectors.system import (
    StatusReport,
    SystemOverview,
    SystemReport,
    SystemVersion,
    active_manifests,
    status_report,
    system_overview,
    system_report,
    system_version,
    trusted_keys,
)

__all__ = [
    "AUDIT_CSV_COLUMNS",
    "CHART_OUTCOMES",
    "ROLLBACK_STATES",
    "TAIL",
    "WEBHOOK_ACTOR_PREFIX",
    "BundleReport",
    "BundleSummary",
    "DeploymentDetail",
    "DeploymentFilter",
    "DeploymentHistory",
    "DeploymentRecord",
    "DeploymentRow",
    "DeploymentSummary",
    "DeploymentTimeline",
    "OutcomeReport",
    "PlanOverview",
    "StatusReport",
    "StepRecord",
    "StepReport",
    "SystemOverview",
    "SystemReport",
    "SystemVersion",
    "WeekCount",
    "WorkerBeat",
    "_actor",
    "_outcome",
    "active_manifests",
    "audit_csv_record",
    "audit_report",
    "audit_rows",
    "bundle_artifacts",
    "bundle_get",
    "bundle_list",
    "bundle_page",
    "bundle_report",
    "bundle_summary",
    "deployment_components",
    "deployment_detail",
    "deployment_find",
    "deployment_get",
    "deployment_in_progress",
    "deployment_last_finished",
    "deployment_list",
    "deployment_page",
    "deployment_progress",
    "deployment_record",
    "deployment_rows",
    "deployment_status",
    "deployment_steps",
    "deployment_summary",
    "deployment_timeline",
    "deployment_waits",
    "deployments_per_week",
    "history_report",
    "live_workers",
    "plan_overview",
    "status_report",
    "step_events_after",
    "step_get",
    "step_record",
    "step_report",
    "step_status",
    "system_overview",
    "system_report",
    "system_version",
    "trusted_keys",
    "webhook_event_for_actor",
    "webhook_event_report",
    "webhook_events",
]

# ----- audit: one row per deployment (REST `GET /audit`, the UI, `audit report`) --------------------


def audit_rows(*, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """Who or what started each deployment, manifest from -> to, outcome, start, duration, every
    component's version before and after, and the bundle it came from (sha256, signers).

    "From" is the manifest active when the deployment was created: the last one that succeeded
    before it. "After" is what each component runs by the run's records (the target once
    committed, the version before after a rollback or a refusal, "unknown" when a rollback
    failed). Three queries, whatever the number of rows.
    """
    rows = (
        Deployment.objects.select_related("manifest", "bundle")
        .defer("manifest__raw", "manifest__topology", "bundle__manifest_raw", "bundle__topology_raw")
        .prefetch_related(
            Prefetch("bundle__artifacts", queryset=BundleArtifact.objects.select_related("artifact"))
        )
        .order_by("id")
    )
    if since:
        rows = rows.filter(created_at__gte=since)
    if until:
        rows = rows.filter(created_at__lt=until)
    deployments = list(rows)
    active = _active_before(deployments[0].pk) if deployments else None
    result = []
    for d in deployments:
        result.append(_audit_row(d, active))
        if d.status == Deployment.Status.SUCCEEDED:
            active = d.manifest.name
    return result


def _active_before(deployment_id: int) -> str | None:
    return (
        Deployment.objects.filter(pk__lt=deployment_id, status=Deployment.Status.SUCCEEDED)
        .order_by("-id")
        .values_list("manifest__name", flat=True)
        .first()
    )


def _audit_row(d: Deployment, active: str | None) -> dict[str, Any]:
    start = d.started_at or d.created_at
    plan = d.planned()
    targets = plan["components"] if plan else []
    progress: dict[str, dict[str, Any]] = d.position.get("progress", {})
    return {
        "deployment": d.pk,
        "actor_kind": d.actor_kind,
        "actor": d.actor_name,
        "requests": d.requests,
        "manifest_from": active,
        "manifest_to": d.manifest.name,
        "outcome": d.status,
        "reason": d.reason,
        "started_at": start,
        "duration_seconds": (d.finished_at - start).total_seconds() if d.finished_at else None,
        "versions_before": {t["key"]: t["current"] for t in targets},
        # From the run position alone (no step query per row), by the rules `deployment_components` uses.
        "versions_after": {t["key"]: _outcome(t, progress.get(t["key"]), d.status, None)[1] for t in targets},
        "bundle": _bundle_of(d.bundle),
    }


def _bundle_of(bundle: Bundle | None) -> dict[str, Any] | None:
    """The deployment's bundle (its `bundle` key), with the artifacts' signers."""
    if bundle is None:
        return None
    signers = sorted(
        {a.artifact.signer_fingerprint for a in bundle.artifacts.all() if a.artifact.signer_fingerprint}
    )
    return {"id": bundle.pk, "sha256": bundle.sha256, "signers": signers}


AUDIT_CSV_COLUMNS = (
    "deployment",
    "actor_kind",
    "actor",
    "manifest_from",
    "manifest_to",
    "outcome",
    "reason",
    "started_at",
    "duration_seconds",
    "versions_before",
    "versions_after",
    "bundle_id",
    "bundle_sha256",
    "bundle_signers",
)


def audit_csv_record(row: dict[str, Any]) -> list[str]:
    """A row as CSV cells: versions as `key=version` joined by spaces, missing values empty."""
    bundle = row["bundle"] or {}
    cells: dict[str, object] = row | {
        "versions_before": " ".join(f"{k}={v}" for k, v in row["versions_before"].items()),
        "versions_after": " ".join(f"{k}={v}" for k, v in row["versions_after"].items()),
        "started_at": row["started_at"].isoformat() if row["started_at"] else "",
        "bundle_id": bundle.get("id", ""),
        "bundle_sha256": bundle.get("sha256", ""),
        "bundle_signers": " ".join(bundle.get("signers", [])),
    }
    return ["" if cells[c] is None else str(cells[c]) for c in AUDIT_CSV_COLUMNS]


# ----- webhooks (issue #9): events as actors, for the audit ---------------------------------------------

WEBHOOK_ACTOR_PREFIX = "webhook:"  # `created_by` of a deployment or bundle a webhook event started


def webhook_events(*, since: datetime | None = None, until: datetime | None = None) -> QuerySet[WebhookEvent]:
    """Signed events received, newest first (unsigned calls are never recorded)."""
    rows = WebhookEvent.objects.order_by("-received_at", "-id")
    if since is not None:
        rows = rows.filter(received_at__gte=since)
    if until is not None:
        rows = rows.filter(received_at__lt=until)
    return rows


def webhook_event_for_actor(created_by: str) -> WebhookEvent | None:
    """The event behind a `created_by` of "webhook:<event id>", else None."""
    if not created_by.startswith(WEBHOOK_ACTOR_PREFIX):
        return None
    event: WebhookEvent | None = WebhookEvent.objects.filter(
        event_id=created_by.removeprefix(WEBHOOK_ACTOR_PREFIX)
    ).first()
    return event


def webhook_event_report(event: WebhookEvent) -> dict[str, Any]:
    """One audit row: who (actor kind "webhook" and the event id), what, when, and the outcome."""
    return {
        "actor": {"kind": "webhook", "id": event.event_id, "remote_addr": event.remote_addr},
        "type": event.type,
        "device_id": event.device_id,
        "own_device": event.own_device,
        "event_time": event.event_time,
        "received_at": event.received_at,
        "action": event.action,
        "status": event.answer_status,
        "answer": json.loads(event.answer_body) if event.answer_body else None,
        "bundle_id": event.bundle_id,
        "deployment_id": event.deployment_id,
        "replays": event.replays,
    }


def audit_report(*, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """`audit_rows` with every step of each deployment (`step_report`s) and the versions as one
    list of before/after pairs, for the printable page."""
    rows = audit_rows(since=since, until=until)
    steps: dict[int, list[StepReport]] = {}
    for step in Step.objects.filter(deployment_id__in=[r["deployment"] for r in rows]).order_by("id"):
        report = step_report(step)
        steps.setdefault(step.deployment_id, []).append(report | {"status": step_status(report)})
    for row in rows:
        row["steps"] = steps.get(row["deployment"], [])
        after = row["versions_after"]
        row["versions"] = [
            {"key": k, "before": v, "after": after.get(k, "")} for k, v in row["versions_before"].items()
        ]
    return rows
