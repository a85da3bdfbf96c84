"""Live questions to the system: dry-run plans, provides and inventory (no database writes)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from updates import selectors
from updates.engine.inspection import Inspector
from updates.engine.manifest import Component, parse_manifest, parse_topology
from updates.engine.planner import Inspected, SelectionError, describe_version, select
from updates.engine.preview import preview_answers
from updates.services.deployments import plan_as_json
from updates.services.environment import (
    Environment,
    NullJournal,
    desired_state_load,
    environment_load,
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
    with tempfile.TemporaryDirectory(prefix="orch-plan-") as tmp:
        journal = NullJournal()
        inspected = Inspector(runner=env.runner(), journal=journal, workdir=Path(tmp) / "_inspect").inspect(
            desired.topology.components
        )
        plan = select(desired, inspected, keys=env.keys(), sources=artifact_sources(env))
        report = plan_as_json(plan)
        for entry, target in zip(report["components"], plan.targets, strict=True):  # type: ignore[call-overload]
            if target.action == "install":
                entry.update(preview_answers(env.runner(), target, Path(tmp)))
    report.update(manifest=desired.manifest.name, form=desired.manifest.form)
    return report


def provides_lines() -> list[str]:
    """`<component_type>.<component_id>.<key>=<value>` for every component, asked live."""
    lines = []
    for item in _inspect_live():
        lines.extend(f"{item.key}.{k}={v}" for k, v in sorted(item.provides.items()))
    return lines


def inventory_lines() -> list[str]:
    env = environment_load()
    lines = []
    with tempfile.TemporaryDirectory(prefix="orch-inv-") as tmp:
        inspector = Inspector(runner=env.runner(), journal=NullJournal(), workdir=Path(tmp))
        for item in _inspect_live():
            lines.append(
                f"mender-orchestrator-manifest.{item.key}.component_type={item.component.component_type}"
            )
            lines.append(
                f"mender-orchestrator-manifest.{item.key}.version={describe_version(item.provides, item.component.interface)}"
            )
            for key, values in sorted(inspector.inventory(item.component, item.component_id).items()):
                lines.extend(f"{item.key}.{key}={v}" for v in values)
    return lines


def _inspect_live() -> list[Inspected]:
    env = environment_load()
    components = current_components(env)
    with tempfile.TemporaryDirectory(prefix="orch-show-") as tmp:
        return Inspector(runner=env.runner(), journal=NullJournal(), workdir=Path(tmp)).inspect(components)


def current_components(env: Environment) -> tuple[Component, ...]:
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
            ).components
        except OSError as exc:
            raise SelectionError([f"cannot read the topology: {exc}"]) from exc
    pointers = selectors.active_manifests()
    if pointers and pointers.active and pointers.active.form == "seed":
        _, components = parse_manifest(pointers.active.raw.encode(), path=Path(pointers.active.source_path))
        return components or ()
    raise SelectionError([f"no topology: {topology} does not exist and no seed-form manifest is active"])
