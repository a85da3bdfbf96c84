"""Writes for the system and its components (their last known answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

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
    rows = [_row(item, now, inventories) for item in inspected]
    # One upsert for all: a row at a time was most of the time between a 1 000-component
    # system's inspection and its first Download (bench/orchestration_overhead.py, figure 3).
    updated = [
        "component_type",
        "component_id",
        "interface",
        "interface_args",
        "provides",
        "version",
        "refreshed_at",
    ]
    Component.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=updated + (["inventory"] if inventories is not None else []),
    )


def _row(
    item: Inspected, now: datetime, inventories: Mapping[str, Mapping[str, list[str]]] | None
) -> Component:
    component = item.component
    return Component(
        key=item.key,
        component_type=component.component_type,
        component_id=item.component_id,
        interface=component.interface,
        interface_args=list(component.interface_args),
        provides=item.provides,
        inventory=dict(inventories.get(item.key, {})) if inventories is not None else {},
        version=describe_version(item.provides, component.interface),
        refreshed_at=now,
    )
