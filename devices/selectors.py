"""Reads for the system and its components."""

from __future__ import annotations

from django.db.models import QuerySet

from devices.models import Component


def component_list() -> QuerySet[Component]:
    return Component.objects.order_by("component_type", "component_id")
