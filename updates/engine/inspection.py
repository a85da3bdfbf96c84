"""Ask every component who it is (`Identity`) and what it runs (`Provides`, `Inventory`).

Runs before anything changes; a component that cannot answer stops the update up front.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from updates.engine.interface import CallResult, InterfaceError, InterfaceRunner
from updates.engine.manifest import TOPOLOGY_FILE, Component, Topology, parse_topology
from updates.engine.planner import Inspected, SelectionError, component_key, describe_version
from updates.engine.provides import parse_identity, parse_inventory, parse_provides
from updates.engine.threads import map_in_context

if TYPE_CHECKING:
    # Only the types: `show-provides` must not load the state machine and the artifact reader.
    from updates.engine.machine import Journal, RunState


class NullJournal:
    """For dry runs and live queries that are not part of a deployment."""

    def checkpoint(self, state: RunState) -> None:
        return None

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int:
        return 0

    def call_finished(self, step: int, **kwargs: object) -> None:
        return None


class Inspector:
    def __init__(self, *, runner: InterfaceRunner, journal: Journal, workdir: Path) -> None:
        self.runner = runner
        self.journal = journal
        self.workdir = workdir

    def inspect(self, components: Sequence[Component]) -> list[Inspected]:
        """Identity and Provides of every component, in parallel; all problems at once."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(components)))) as pool:
            results = map_in_context(pool, self._inspect_one, components)
        problems = [r for r in results if isinstance(r, str)]
        if problems:
            raise SelectionError(problems)
        return [r for r in results if isinstance(r, Inspected)]

    def inventory(self, component: Component, component_id: str) -> dict[str, list[str]]:
        stdout = self._ask(component, "Inventory", component_id)
        return parse_inventory(stdout)

    def _inspect_one(self, component: Component) -> Inspected | str:
        label = component.component_id or f"{component.component_type}{list(component.interface_args)}"
        try:
            component_id = component.component_id or self._identity(component)
            stdout = self._ask(component, "Provides", component_id)
            # Seed-form (old Mender) interfaces printed `device_type=`; the current protocol forbids it.
            provides = parse_provides(
                stdout,
                source=f"{component.interface} Provides for {label}",
                interface=component.interface,
                allow_device_type=component.component_id is not None,
            )
        except InterfaceError as exc:
            return f"{component.component_type} {label}: {exc}"
        return Inspected(component=component, component_id=component_id, provides=provides)

    def _identity(self, component: Component) -> str:
        stdout = self._ask(component, "Identity", None)
        return parse_identity(stdout, source=f"{component.interface} Identity")

    def _ask(self, component: Component, state: str, component_id: str | None) -> str:
        argv = self.runner.argv(
            interface=component.interface,
            state=state,
            workdir=self.workdir,
            component_type=component.component_type,
            component_id=component.component_id,
            args=component.interface_args,
        )
        # Before Identity answered, the component is named by its interface args.
        key = (
            component_key(component.component_type, component_id)
            if component_id
            else (f"{component.component_type}[{' '.join(component.interface_args)}]")
        )
        step = self.journal.call_started(component=key, state=state, argv=argv)
        result = self.runner.call(argv, cwd=self.workdir)
        self.journal.call_finished(step, result=result)
        if not result.ok:
            raise InterfaceError(_failed(state, result))
        return result.stdout


def _failed(state: str, result: CallResult) -> str:
    if result.timed_out:
        return f"{state} query timed out"
    return f"{state} query exited with {result.exit_code}: {result.stderr.strip()[-300:]}"


# ----- the answers of `show-provides` and `show-inventory` ---------------------------------------


def provides_lines(inspected: Sequence[Inspected]) -> list[str]:
    """`<component_type>.<component_id>.<key>=<value>` for every component."""
    return [f"{item.key}.{k}={v}" for item in inspected for k, v in sorted(item.provides.items())]


def inventory_lines(inspector: Inspector, inspected: Sequence[Inspected]) -> list[str]:
    lines = []
    for item in inspected:
        version = describe_version(item.provides, item.component.interface)
        lines.append(
            f"mender-orchestrator-manifest.{item.key}.component_type={item.component.component_type}"
        )
        lines.append(f"mender-orchestrator-manifest.{item.key}.version={version}")
        for key, values in sorted(inspector.inventory(item.component, item.component_id).items()):
            lines.extend(f"{item.key}.{key}={v}" for v in values)
    return lines


def topology_on_disk(topology_dir: Path, components_file: Path | None) -> Topology | None:
    """`<topology_dir>/topology.yaml`; None when there is no topology file (a seed-form system,
    whose components are in its active manifest)."""
    topology = topology_dir / TOPOLOGY_FILE
    if not topology.is_file():
        return None
    try:
        components_data = components_file.read_bytes() if components_file else None
        return parse_topology(
            topology.read_bytes(),
            path=topology,
            components_data=components_data,
            components_path=components_file,
        )
    except OSError as exc:
        raise SelectionError([f"cannot read the topology: {exc}"]) from exc
