"""Live questions to the system: dry-run plans, provides and inventory (no database writes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from updates import selectors
from updates.engine.constraints import CONSTRAINTS_FILE
from updates.engine.manifest import (
    DesiredState,
    InputError,
    Problem,
    Topology,
    parse_manifest,
    parse_topology,
)
from updates.engine.planner import Plan, SelectionError, describe_version, select
from updates.engine.preview import preview_answers, rollback_support
from updates.engine.transitions import ConstraintViolation, Suggestion, check_plan, plan_slots, suggest_orders
from updates.services.constraints import constraints_for, plan_verdict, verdict_as_json
from updates.services.environment import (
    Environment,
    desired_state_load,
    environment_load,
    live_inspector,
    topology_components_file,
)
from updates.services.sources import artifact_sources


def plan_preview(*, manifest_path: Path, topology_components: Path | None = None) -> dict[str, Any]:
    """What `install` would do, without touching anything (queries only).

    `constraints` is the verdict of the declared constraints (None when none are declared).
    """
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    constraints = constraints_for(env, desired)
    with _live_plan(env, desired) as (plan, scratch):
        components: list[dict[str, Any]] = []
        rollback: dict[str, bool] = {}
        for entry, target in zip(plan.to_json()["components"], plan.targets, strict=True):
            answers = preview_answers(env.runner(), target, scratch) if target.action == "install" else {}
            components.append({**entry, **answers})
            rollback[target.key] = answers.get("rollback") == "Yes"
    verdict = check_plan(plan, constraints, rollback) if constraints else None
    groups = [[order, list(keys)] for order, keys in plan.groups]
    return {
        "groups": groups,
        "components": components,
        "manifest": desired.manifest.name,
        "form": desired.manifest.form,
        "constraints": verdict_as_json(verdict) if verdict else None,
    }


def plan_constraints_check(*, manifest_path: Path, topology_components: Path | None = None) -> None:
    """Raise ConstraintViolation when the live plan violates the declared constraints (queries
    only; nothing when none are declared). For callers that must answer at once (the API's 422)
    although the deployment itself runs later on a worker, which checks again."""
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    constraints = constraints_for(env, desired)
    if constraints is None:
        return
    with _live_plan(env, desired) as (plan, scratch):
        verdict = plan_verdict(env.runner(), plan, constraints, scratch)
    if not verdict.ok:
        raise ConstraintViolation(verdict)


def plan_suggest_order(*, manifest_path: Path, topology_components: Path | None = None) -> Suggestion:
    """`order` values under which the plan satisfies the declared constraints (queries only).

    Raises InputError when no constraints are declared: there is nothing to derive an order from.
    """
    env = environment_load()
    desired = desired_state_load(env, manifest_path=manifest_path, topology_components=topology_components)
    constraints = constraints_for(env, desired)
    if constraints is None:
        raise InputError([Problem(str(env.topology_dir / CONSTRAINTS_FILE), None, "(file)", _NO_CONSTRAINTS)])
    with _live_plan(env, desired) as (plan, scratch):
        rollback = rollback_support(env.runner(), plan.installing(), scratch)
    slots, _ = plan_slots(plan, rollback)
    return suggest_orders(constraints, slots)


_NO_CONSTRAINTS = (
    "does not exist and the manifest has no 'constraints:' section: nothing to derive an order from"
)


@contextlib.contextmanager
def _live_plan(env: Environment, desired: DesiredState) -> Iterator[tuple[Plan, Path]]:
    """The plan `install` would make now, and a scratch directory for more queries (removed after)."""
    with live_inspector(env) as inspector:
        inspected = inspector.inspect(desired.topology.components)
        yield (
            select(desired, inspected, keys=env.keys(), sources=artifact_sources(env)),
            inspector.workdir.parent,
        )


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
