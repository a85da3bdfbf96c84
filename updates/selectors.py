"""Reads: status and history, straight from the database rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from devices.selectors import component_list
from updates.models import ActiveManifests, Bundle, BundleArtifact, Deployment, Step, WebhookEvent


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
