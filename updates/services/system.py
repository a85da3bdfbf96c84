"""Live questions to the system: dry-run plans, provides and inventory (no database writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from updates import selectors
from updates.engine.manifest import Topology, parse_manifest, parse_topology
from updates.engine.planner import SelectionError, describe_version, select
from updates.engine.preview import preview_answers
from updates.services.environment import (
    Environment,
    desired_state_load,
    environment_load,
    live_inspector,
    topology_components_file,
)
from updates.services.sources import artifact_sources


def plan_preview(
    *, manifest_path: Path, topology_components: Path | None = None, manifest_data: bytes | None = None
) -> dict[str, Any]:
    """What `install` would do, without touching anything (queries only). `manifest_data` is a
    manifest that exists only in memory (the API's YAML text); `manifest_path` then names it."""
    env = environment_load()
    desired = desired_state_load(
        env, manifest_path=manifest_path, topology_components=topology_components, manifest_data=manifest_data
    )
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
        inspected = inspector.inspect(current_topology(env).components)
    return [f"{item.key}.{k}={v}" for item in inspected for k, v in sorted(item.provides.items())]


def inventory_lines() -> list[str]:
    env = environment_load()
    lines = []
    with live_inspector(env) as inspector:
        for item in inspector.inspect(current_topology(env).components):
            prefix = f"mender-orchestrator-manifest.{item.key}"
            lines.append(f"{prefix}.component_type={item.component.component_type}")
            lines.append(f"{prefix}.version={describe_version(item.provides, item.component.interface)}")
            for key, values in sorted(inspector.inventory(item.component, item.component_id).items()):
                lines.extend(f"{item.key}.{key}={v}" for v in values)
    return lines


def current_topology(env: Environment) -> Topology:
    """The topology on disk; for a seed-form system, the components of the active manifest."""
    topology = env.topology_dir / "topology.yaml"
    if topology.is_file():
        components_file = topology_components_file(env)
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
    pointers = selectors.active_manifests()
    if pointers and pointers.active and pointers.active.form == "seed":
        _, components = parse_manifest(pointers.active.raw.encode(), path=Path(pointers.active.source_path))
        return Topology(None, components or (), pointers.active.source_path)
    raise SelectionError([f"no topology: {topology} does not exist and no seed-form manifest is active"])
