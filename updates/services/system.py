"""Live questions to the system: dry-run plans, provides and inventory (no database writes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from updates import selectors
from updates.engine import inspection
from updates.engine.constraints import CONSTRAINTS_FILE
from updates.engine.errors import InvalidInput
from updates.engine.manifest import (
    TOPOLOGY_FILE,
    DesiredState,
    InputError,
    Problem,
    Topology,
    parse_manifest,
)
from updates.engine.planner import Plan, SelectionError, select
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


def plan_preview(
    *,
    manifest_path: Path,
    topology_components: Path | None = None,
    manifest_data: bytes | None = None,
    confined: bool = False,
) -> dict[str, Any]:
    """What `install` would do, without touching anything (queries only). `manifest_data` is a
    manifest that exists only in memory (the API's YAML text); `manifest_path` then names it.
    `confined`: the manifest comes from a client (the API), so its `artifact_path`s must lie in
    the data store (`artifact_paths_confine`).

    `constraints` is the verdict of the declared constraints (None when none are declared).
    """
    env = environment_load()
    desired = desired_state_load(
        env, manifest_path=manifest_path, topology_components=topology_components, manifest_data=manifest_data
    )
    if confined:
        artifact_paths_confine(env, desired, manifest_path)
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


class NothingToDeploy(InvalidInput):
    """The system already runs every version of the manifest: a deployment would change nothing."""

    code = "nothing_to_deploy"
    http_status = 409


def artifact_paths_confine(env: Environment, desired: DesiredState, manifest_path: Path) -> None:
    """Refuse an `artifact_path` outside the data store, before anything looks at the file: the
    same answer whether it exists or not, so a client cannot probe the server's file system."""
    root = env.datastore.resolve()
    problems = [
        Problem(
            manifest_path.name,
            None,
            f"component_types.{kind}.artifact_path",
            "outside the data store: a manifest sent as text names artifacts by artifact_name, or by "
            "a path under the data store (its artifact store or a bundle)",
        )
        for kind, target in desired.manifest.targets.items()
        if target.artifact_path is not None and not target.artifact_path.resolve().is_relative_to(root)
    ]
    if problems:
        raise InputError(problems)


def plan_constraints_check(
    *,
    manifest_path: Path,
    topology_components: Path | None = None,
    manifest_data: bytes | None = None,
    require_changes: bool = False,
    constraints: bool = True,
) -> None:
    """Raise ConstraintViolation when the live plan violates the declared constraints (queries
    only; nothing when none are declared). For callers that must answer at once (the API's 422)
    although the deployment itself runs later on a worker, which checks again. `manifest_data`:
    the manifest's bytes when they come from the database (the previous manifest's snapshot).
    `require_changes`: also raise NothingToDeploy when the plan installs nothing (the pages and
    the API start no deployment that would change nothing; the command line still runs one, as
    Mender's update module expects of an `install` of what runs already). `constraints` False:
    forced past them, only `require_changes` is checked."""
    env = environment_load()
    desired = desired_state_load(
        env, manifest_path=manifest_path, topology_components=topology_components, manifest_data=manifest_data
    )
    rules = constraints_for(env, desired) if constraints else None
    if rules is None and not require_changes:
        return
    with _live_plan(env, desired) as (plan, scratch):
        if require_changes and not plan.installing():
            raise NothingToDeploy(
                f"nothing to deploy: the system already runs every version of {desired.manifest.name}"
            )
        verdict = plan_verdict(env.runner(), plan, rules, scratch) if rules else None
    if verdict is not None and not verdict.ok:
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
            select(desired, inspected, keys=env.keys(), sources=artifact_sources(env, streamed=True)),
            inspector.workdir.parent,
        )


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
