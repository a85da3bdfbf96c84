from __future__ import annotations

from django.db import models


class System(models.Model):
    """The system this appliance updates, as of the last deployment or refresh (one row)."""

    system_type = models.CharField(max_length=200, blank=True)
    topology_yaml = models.TextField(blank=True)
    topology_source = models.CharField(max_length=1000, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


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

    class Meta:
        ordering = ["component_type", "component_id"]

    def __str__(self) -> str:
        return self.key
