"""What the components run, as the workers last asked them: for a process that must not call the
update interfaces itself.

In production the web server runs as an unprivileged user (deploy/systemd), while the
interfaces flash the gateway and the boards and need the privileges the worker has. So the web
server's questions (a bundle's compatibility check, the dry-run plan) are answered from the
answers the workers stored (`devices.Component`: at worker start, after every deployment, on
Refresh), never by calling an interface (`ORCH_INTERFACE_QUERIES=stored`). A deployment's own
plan is still made live by its runner, so a stale answer here can only make a preview wrong,
never a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from devices.models import Component as ComponentRow
from updates.engine.inspection import Inspector, NullJournal
from updates.engine.interface import InterfaceRunner
from updates.engine.manifest import Component
from updates.engine.planner import Inspected, SelectionError


class StoredInspector(Inspector):
    """An Inspector whose answers come from the database; same questions, same errors."""

    def __init__(self, *, runner: InterfaceRunner, workdir: Path) -> None:
        super().__init__(runner=runner, journal=NullJournal(), workdir=workdir)

    def inspect(self, components: Sequence[Component]) -> list[Inspected]:
        rows = list(ComponentRow.objects.all())
        found = [_stored(component, rows) for component in components]
        problems = [f for f in found if isinstance(f, str)]
        if problems:
            raise SelectionError(problems)
        return [f for f in found if isinstance(f, Inspected)]

    def inventory(self, component: Component, component_id: str) -> dict[str, list[str]]:
        rows = ComponentRow.objects.filter(component_type=component.component_type, component_id=component_id)
        return {k: list(v) for row in rows[:1] for k, v in row.inventory.items()}


def _stored(component: Component, rows: Sequence[ComponentRow]) -> Inspected | str:
    for row in rows:
        if (
            row.component_type == component.component_type
            and row.interface == component.interface
            and list(row.interface_args) == list(component.interface_args)
            and component.component_id in (None, row.component_id)
            and row.refreshed_at is not None
        ):
            return Inspected(component=component, component_id=row.component_id, provides=dict(row.provides))
    label = component.component_id or f"{component.component_type}{list(component.interface_args)}"
    return (
        f"{component.component_type} {label}: no answer stored yet (this web server does not call "
        "the interfaces itself); a worker asks every component at its start, after each deployment "
        "and on Refresh (System page, or POST /api/v1/system/refresh)"
    )
