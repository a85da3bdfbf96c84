"""The demo appliance in-process for service tests (settings pointed at a demo system)."""

from __future__ import annotations

from tests.hooks.conftest import appliance, broker, demo, migrated_db, system

__all__ = ["appliance", "broker", "demo", "migrated_db", "system"]
