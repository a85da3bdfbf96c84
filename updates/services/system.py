"""Live questions to the system: dry-run plans, provides and inventory (no database writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from updates import selectors
from updates.engine import inspection
from updates.engine.manifest import TOPOLOGY_FILE, Topology, parse_manifest
from updates.engine.planner import SelectionError, select
from updates.engine.preview import preview_answers
from updates.services.environment import (
    Environment,
    desired_state_load,
    environment_load,
    live_inspector,
    topology_components_file,
)
from updates.services.sources import artifact_sources


def plan_preview(*, manifest_path: Path, topology_components: Path | None = None) -> dict[str, Any]:
    """What `install` would do, without touching anything (queries only)."""
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    with live_inspector(env) as inspector:
        inspected = inspector.inspect(desired.topology.components)
        plan = select(desired, inspected, keys=env.keys(), sources=artifact_sources(env))
        components: list[dict[str, Any]] = []
        for entry, target in zip(plan.to_json()["components"], plan.targets, strict=True):
            answers = (
                preview_answers(env.runner(), target, inspector.workdir.parent)
                if target.action == "install"
                else {}
            )
            components.append({**entry, **answers})
    groups = [[order, list(keys)] for order, keys in plan.groups]
    return {
        "groups": groups,
        "components": components,
        "manifest": desired.manifest.name,
        "form": desired.manifest.form,
    }


def provides_lines() -> list[str]:
    """`<component_type>.<component_id>.<key>=<value>` for every component, asked live."""
    env = environment_load()
    with live_inspector(env) as inspector:
        return inspection.provides_lines(inspector.inspect(current_topology(env).components))


def inventory_lines() -> list[str]:
    env = environment_load()
    with live_inspector(env) as inspector:
        return inspection.inventory_lines(inspector, inspector.inspect(current_topology(env).components))


def current_topology(env: Environment) -> Topology:
    """The topology on disk; for a seed-form system, the components of the active manifest."""
    topology = inspection.topology_on_disk(env.topology_dir, topology_components_file(env))
    if topology is not None:
        return topology
    pointers = selectors.active_manifests()
    if pointers and pointers.active and pointers.active.form == "seed":
        _, components = parse_manifest(pointers.active.raw.encode(), path=Path(pointers.active.source_path))
        return Topology(None, components or (), pointers.active.source_path)
    topology_path = env.topology_dir / TOPOLOGY_FILE
    raise SelectionError([f"no topology: {topology_path} does not exist and no seed-form manifest is active"])
