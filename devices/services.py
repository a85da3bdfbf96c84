"""Writes for the system and its components (their topology and last known answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from devices.models import Component, System
from updates.engine.manifest import Topology
from updates.engine.planner import Inspected, describe_version


@transaction.atomic
def components_record(
    *,
    inspected: Sequence[Inspected],
    topology: Topology,
    inventories: Mapping[str, Mapping[str, list[str]]] | None = None,
    deployed: bool = False,
) -> None:
    """Store what every component reported; the newest answer replaces the old one.

    `deployed`: the answers were taken as a deployment ended, the reference for drift."""
    System.objects.update_or_create(
        pk=1, defaults={"system_type": topology.system_type or "", "topology": topology.to_json()}
    )
    now = timezone.now()
    rows = [_row(item, now, inventories, deployed=deployed) for item in inspected]
    # One upsert for all: a row at a time was most of the time between a 1 000-component
    # system's inspection and its first Download (bench/orchestration_overhead.py, figure 3).
    updated = ["component_type", "component_id", "interface", "interface_args", "provides", "version"]
    updated += ["refreshed_at"] + (["inventory"] if inventories is not None else [])
    updated += ["deployed_version", "deployed_at"] if deployed else []
    Component.objects.bulk_create(rows, update_conflicts=True, unique_fields=["key"], update_fields=updated)


def _row(
    item: Inspected,
    now: datetime,
    inventories: Mapping[str, Mapping[str, list[str]]] | None,
    *,
    deployed: bool,
) -> Component:
    component = item.component
    version = describe_version(item.provides, component.interface)
    return Component(
        key=item.key,
        component_type=component.component_type,
        component_id=item.component_id,
        interface=component.interface,
        interface_args=list(component.interface_args),
        provides=item.provides,
        inventory=dict(inventories.get(item.key, {})) if inventories is not None else {},
        version=version,
        refreshed_at=now,
        deployed_version=version if deployed else "",
        deployed_at=now if deployed else None,
    )
