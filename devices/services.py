"""Writes for the system and its components (their topology and last known answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
) -> list[DriftChange]:
    """Store what every component reported; the newest answer replaces the old one.

    `deployed`: the answers were taken as a deployment ended, the reference for drift. Returns
    the drifts that started or ended with these answers (docs/policy.md), as journal entries'
    `kind` and `data`, for the caller to journal in its transaction."""
    now = timezone.now()
    System.objects.update_or_create(
        pk=1,
        defaults={
            "system_type": topology.system_type or "",
            "topology": topology.to_json(),
            "refreshed_at": now,
        },
    )
    known = {c.key: c for c in Component.objects.filter(key__in=[i.key for i in inspected])}
    rows = [_row(item, now, inventories, deployed=deployed, known=known.get(item.key)) for item in inspected]
    changes = [c for c in (_drift_change(known.get(row.key), row) for row in rows) if c is not None]
    # One upsert for all: a row at a time was most of the time between a 1 000-component
    # system's inspection and its first Download (bench/orchestration_overhead.py, figure 3).
    updated = ["component_type", "component_id", "interface", "interface_args", "provides", "version"]
    updated += ["refreshed_at"] + (["inventory"] if inventories is not None else [])
    updated += ["deployed_version", "deployed_at"] if deployed else []
    updated += ["drifted_since"]
    Component.objects.bulk_create(rows, update_conflicts=True, unique_fields=["key"], update_fields=updated)
    return changes


def _row(
    item: Inspected,
    now: datetime,
    inventories: Mapping[str, Mapping[str, list[str]]] | None,
    *,
    deployed: bool,
    known: Component | None,
) -> Component:
    component = item.component
    version = describe_version(item.provides, component.interface)
    reference = version if deployed else (known.deployed_version if known else "")
    drifted = bool(reference) and version != reference
    since = (known.drifted_since if known and known.drifted_since else now) if drifted else None
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
        drifted_since=since,
    )


@dataclass(frozen=True)
class DriftChange:
    """A drift that started or ended: the journal entry's kind, subject and data."""

    kind: str
    subject: str
    data: dict[str, object]


def _drift_change(before: Component | None, after: Component) -> DriftChange | None:
    """A drift's start or end (each once), as a journal entry's kind, subject and data."""
    since = before.drifted_since if before is not None else None
    now_drifted = after.drifted_since is not None
    if (since is not None) == now_drifted:
        return None
    expected = after.deployed_version or (before.deployed_version if before else "")
    data: dict[str, object] = {"component": after.key, "expected": expected, "actual": after.version}
    if since is not None:
        data["since"] = since.isoformat()
    kind = "component.drifted" if now_drifted else "component.drift_ended"
    return DriftChange(kind, f"component:{after.key}", data)
