"""Refresh what every component runs (`Provides`, and `Inventory` on request) into the database."""

from __future__ import annotations

import logging
from pathlib import Path

from django.db import transaction

from audit.services import journal_append
from devices.services import components_record
from updates.actors import SYSTEM, Actor
from updates.engine.errors import OrchestratorError
from updates.engine.machine import Journal
from updates.engine.manifest import Topology
from updates.engine.planner import Inspected
from updates.services.environment import Environment, live_inspector

log = logging.getLogger("orchestrator.components")


def components_refresh(
    env: Environment,
    *,
    topology: Topology,
    inventory: bool = False,
    journal: Journal | None = None,
    workdir: Path | None = None,
    deployed: bool = False,
    actor: Actor = SYSTEM,
) -> list[Inspected]:
    """Ask every component live and store the answers; raises SelectionError if one cannot answer.

    With a deployment's journal (and work dir) the queries become step rows of that deployment
    too; `deployed` marks the answers as what the system runs as that deployment ends."""
    with live_inspector(env, journal=journal, workdir=workdir) as inspector:
        inspected = inspector.inspect(topology.components)
        inventories = (
            {i.key: inspector.inventory(i.component, i.component_id) for i in inspected}
            if inventory
            else None
        )
    with transaction.atomic():  # the answers and the drift they start or end, together
        changes = components_record(
            inspected=inspected, topology=topology, inventories=inventories, deployed=deployed
        )
        for change in changes:
            journal_append(kind=change.kind, actor=actor, subject=change.subject, data=change.data)
    return inspected


def components_refresh_after_deployment(env: Environment, *, topology: Topology, journal: Journal) -> None:
    """After a deployment: the record of the run must not depend on one more query succeeding."""
    try:
        components_refresh(env, topology=topology, journal=journal, deployed=True)
    except OrchestratorError as exc:
        log.warning("could not refresh component versions after the deployment: %s", exc)
