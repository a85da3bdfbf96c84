"""Writes for the system and its components (their last known answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import transaction
from django.utils import timezone

from devices.models import Component, System
from updates.engine.planner import Inspected, describe_version


@transaction.atomic
def components_record(
    *,
    inspected: Sequence[Inspected],
    system_type: str,
    inventories: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> None:
    """Store what every component reported; the newest answer replaces the old one."""
    System.objects.update_or_create(pk=1, defaults={"system_type": system_type})
    now = timezone.now()
    for item in inspected:
        component = item.component
        extra = {"inventory": dict(inventories[item.key])} if inventories and item.key in inventories else {}
        Component.objects.update_or_create(
            key=item.key,
            defaults={
                **extra,
                "component_type": component.component_type,
                "component_id": item.component_id,
                "interface": component.interface,
                "interface_args": list(component.interface_args),
                "provides": item.provides,
                "version": describe_version(item.provides, component.interface),
                "refreshed_at": now,
            },
        )
