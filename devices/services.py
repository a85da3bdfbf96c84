"""Writes for the system and its components (their topology and last known answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
    for item in inspected:
        version = describe_version(item.provides, item.component.interface)
        extra: dict[str, object] = {}
        if inventories and item.key in inventories:
            extra["inventory"] = dict(inventories[item.key])
        if deployed:
            extra.update(deployed_version=version, deployed_at=now)
        Component.objects.update_or_create(
            key=item.key,
            defaults={
                **extra,
                "component_type": item.component.component_type,
                "component_id": item.component_id,
                "interface": item.component.interface,
                "interface_args": list(item.component.interface_args),
                "provides": item.provides,
                "version": version,
                "refreshed_at": now,
            },
        )
