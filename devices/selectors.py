"""Reads for the system and its components."""

from __future__ import annotations

from django.db.models import QuerySet

from devices.models import Component, System


def system_get() -> System | None:
    return System.objects.filter(pk=1).first()


def system_type() -> str:
    """The system type the components were last asked with ("" before the first time)."""
    return System.objects.filter(pk=1).values_list("system_type", flat=True).first() or ""


def component_list() -> QuerySet[Component]:
    return Component.objects.order_by("component_type", "component_id")


def component_drift() -> list[Component]:
    """Components whose last answer differs from what they ran when the last deployment ended."""
    return [c for c in component_list() if c.drifted]
