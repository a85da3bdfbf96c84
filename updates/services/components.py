"""Refresh what every component runs (`Provides`, and `Inventory` on request) into the database."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from devices.services import components_record
from updates.engine.inspection import Inspector
from updates.engine.interface import InterfaceError
from updates.engine.machine import Journal
from updates.engine.manifest import Component
from updates.engine.planner import Inspected, SelectionError
from updates.services.environment import Environment, NullJournal

log = logging.getLogger("orchestrator.components")


def components_refresh(
    env: Environment,
    *,
    components: Sequence[Component],
    system_type: str,
    inventory: bool = False,
    journal: Journal | None = None,
) -> list[Inspected]:
    """Ask every component live and store the answers; raises SelectionError if one cannot answer.

    With a deployment's journal the queries become step rows of that deployment too."""
    with tempfile.TemporaryDirectory(prefix="orch-refresh-") as tmp:
        inspector = Inspector(runner=env.runner(), journal=journal or NullJournal(), workdir=Path(tmp))
        inspected = inspector.inspect(components)
        inventories = (
            {i.key: inspector.inventory(i.component, i.component_id) for i in inspected}
            if inventory
            else None
        )
    components_record(inspected=inspected, system_type=system_type, inventories=inventories)
    return inspected


def components_refresh_quietly(
    env: Environment, *, components: Sequence[Component], system_type: str, journal: Journal
) -> None:
    """After a deployment: the record of the run must not depend on one more query succeeding."""
    try:
        components_refresh(env, components=components, system_type=system_type, journal=journal)
    except (SelectionError, InterfaceError, ValueError) as exc:
        log.warning("could not refresh component versions after the deployment: %s", exc)
