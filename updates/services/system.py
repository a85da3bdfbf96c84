"""Live questions to the system: dry-run plans, provides and inventory (no database writes)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from updates import selectors
from updates.engine import inspection
from updates.engine.inspection import Inspector
from updates.engine.manifest import TOPOLOGY_FILE, Component, parse_manifest
from updates.engine.planner import SelectionError, select
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


def plan_preview(*, manifest_path: Path, topology_components: Path | None = None) -> dict[str, Any]:
    """What `install` would do, without touching anything (queries only)."""
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
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
    env = environment_load()
    with tempfile.TemporaryDirectory(prefix="orch-show-") as tmp:
        inspector = Inspector(runner=env.runner(), journal=NullJournal(), workdir=Path(tmp))
        return inspection.provides_lines(inspector.inspect(current_components(env)))


def inventory_lines() -> list[str]:
    env = environment_load()
    with tempfile.TemporaryDirectory(prefix="orch-inv-") as tmp:
        inspector = Inspector(runner=env.runner(), journal=NullJournal(), workdir=Path(tmp))
        return inspection.inventory_lines(inspector, inspector.inspect(current_components(env)))


def current_components(env: Environment) -> tuple[Component, ...]:
    """The topology on disk; for a seed-form system, the components of the active manifest."""
    components = inspection.topology_on_disk(env.topology_dir, topology_components_file(env))
    if components is not None:
        return components
    pointers = selectors.active_manifests()
    if pointers and pointers.active and pointers.active.form == "seed":
        _, seed = parse_manifest(pointers.active.raw.encode(), path=Path(pointers.active.source_path))
        return seed or ()
    topology = env.topology_dir / TOPOLOGY_FILE
    raise SelectionError([f"no topology: {topology} does not exist and no seed-form manifest is active"])
