"""Reads: status and history, straight from the database rows."""

from __future__ import annotations

from django.db.models import QuerySet

from updates.models import ActiveManifests, Deployment, Step


def deployment_in_progress() -> Deployment | None:
    return Deployment.objects.filter(status__in=Deployment.IN_PROGRESS).order_by("-id").first()


def deployment_list(*, limit: int = 50) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").order_by("-id")[:limit]


def deployment_steps(deployment: Deployment) -> QuerySet[Step]:
    return deployment.steps.order_by("id")


def active_manifests() -> ActiveManifests | None:
    return ActiveManifests.objects.select_related("active", "previous").filter(pk=1).first()
