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

from django.db.models import QuerySet

from updates.actors import Actor
from updates.liveness import WorkerBeat, live_workers
from updates.models import Deployment, WebhookEvent
from updates.selectors.actors import _actor
from updates.selectors.bundles import (
    BundleReport,
    BundleRow,
    BundleSummary,
    PlanOverview,
    bundle_artifacts,
    bundle_get,
    bundle_list,
    bundle_page,
    bundle_report,
    bundle_rows,
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
    deployment_counts,
    deployment_detail,
    deployment_find,
    deployment_get,
    deployment_in_progress,
    deployment_list,
    deployment_page,
    deployment_progress,
    deployment_record,
    deployment_rows,
    deployment_status,
    deployment_summary,
    deployment_timeline,
    deployment_waits,
    failed_states_from_steps,
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
    PageComponent,
    StatusReport,
    SystemOverview,
    SystemReport,
    SystemVersion,
    active_manifests,
    drift_list,
    status_report,
    system_overview,
    system_page,
    system_report,
    system_version,
    trusted_keys,
)

__all__ = [
    "CHART_OUTCOMES",
    "ROLLBACK_STATES",
    "TAIL",
    "WEBHOOK_ACTOR_PREFIX",
    "BundleReport",
    "BundleRow",
    "BundleSummary",
    "DeploymentDetail",
    "DeploymentFilter",
    "DeploymentHistory",
    "DeploymentRecord",
    "DeploymentRow",
    "DeploymentSummary",
    "DeploymentTimeline",
    "OutcomeReport",
    "PageComponent",
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
    "bundle_artifacts",
    "bundle_get",
    "bundle_list",
    "bundle_page",
    "bundle_report",
    "bundle_rows",
    "bundle_summary",
    "deployment_components",
    "deployment_counts",
    "deployment_detail",
    "deployment_find",
    "deployment_get",
    "deployment_in_progress",
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
    "drift_list",
    "failed_states_from_steps",
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
    "system_page",
    "system_report",
    "system_version",
    "trusted_keys",
    "webhook_event_for_actor",
    "webhook_event_report",
    "webhook_events",
]

# ----- audit: what the journal records of a deployment's outcome ------------------------------------


def component_versions(deployment: Deployment) -> list[dict[str, str]]:
    """Every planned component's version before and after, by the run's records (the target once
    committed, the version before after a rollback or a refusal, "unknown" when a rollback
    failed): journaled with the outcome (`deployment.finished`), which the audit report reads."""
    plan = deployment.planned()
    progress: dict[str, dict[str, Any]] = deployment.position.get("progress", {})
    return [
        {
            "key": t["key"],
            "action": t["action"],
            "before": t["current"],
            "target": t["target"],
            "after": _outcome(t, progress.get(t["key"]), deployment.status, None)[1],
        }
        for t in (plan["components"] if plan else [])
    ]


# ----- webhooks (issue #9): events as actors, for the audit ---------------------------------------------


def webhook_events(*, since: datetime | None = None, until: datetime | None = None) -> QuerySet[WebhookEvent]:
    """Signed events received, newest first (unsigned calls are never recorded)."""
    rows = WebhookEvent.objects.order_by("-received_at", "-id")
    if since is not None:
        rows = rows.filter(received_at__gte=since)
    if until is not None:
        rows = rows.filter(received_at__lt=until)
    return rows


def webhook_event_for_actor(actor: Actor) -> WebhookEvent | None:
    """The event behind a webhook actor (what it started names it), else None."""
    if actor.kind != "webhook":
        return None
    event: WebhookEvent | None = WebhookEvent.objects.filter(event_id=actor.name).first()
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
        "fetch": {"status": event.fetch_status, "error": event.fetch_error} if event.fetch_status else None,
    }
