from __future__ import annotations

from typing import cast

from django.db import models

from updates.engine.manifest import TopologyJson


class System(models.Model):
    """The system this appliance updates, as of the last deployment or refresh (one row)."""

    system_type = models.CharField(max_length=200, blank=True)
    # The normalised topology (engine `Topology.to_json`) its components were last asked with.
    topology = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)
    # docs/policy.md, drift: when every component was last asked (the worker's `drift.interval`
    # counts from it, across restarts), and until when a refresh holds the lease (one at a time).
    refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_lease_until = models.DateTimeField(null=True, blank=True)

    def topology_snapshot(self) -> TopologyJson | None:
        return cast(TopologyJson, self.topology) if self.topology else None


class Component(models.Model):
    """One updatable component with its last known `Provides` and `Inventory` answers."""

    key = models.CharField(max_length=300, unique=True)  # "<component_type>.<component_id>"
    component_type = models.CharField(max_length=200)
    component_id = models.CharField(max_length=200)
    interface = models.CharField(max_length=200)
    interface_args = models.JSONField(default=list)
    provides = models.JSONField(default=dict)
    inventory = models.JSONField(default=dict)
    version = models.CharField(max_length=300, blank=True)
    refreshed_at = models.DateTimeField(null=True)
    # What it ran when the last deployment ended: a later answer that differs is drift (someone
    # or something changed the component outside the orchestrator).
    deployed_version = models.CharField(max_length=300, blank=True)
    deployed_at = models.DateTimeField(null=True)
    drifted_since = models.DateTimeField(null=True, blank=True)  # the first answer that differed

    class Meta:
        ordering = ["component_type", "component_id"]

    def __str__(self) -> str:
        return self.key

    @property
    def drifted(self) -> bool:
        return bool(self.deployed_version) and self.version != self.deployed_version
