"""Declared constraints on the Django side: which document applies, and the verdict as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updates.engine.constraints import (
    Constraints,
    constraints_from_manifest,
    load_constraints,
    parse_constraints,
)
from updates.engine.errors import InvalidInput
from updates.engine.interface import InterfaceRunner
from updates.engine.manifest import DesiredState
from updates.engine.planner import Plan
from updates.engine.preview import rollback_support
from updates.engine.transitions import Verdict, Violation, check_plan
from updates.services.environment import Environment


class ForceWithoutReason(InvalidInput):
    """`force` overrides a declared constraint: the record must say why."""

    code = "force_without_reason"


@dataclass(frozen=True)
class Forced:
    """Run past the declared constraints, and why. Force is an option of the request that
    creates the deployment, so who forced it is the deployment's actor."""

    reason: str


def forced_override(*, force: bool, reason: str) -> Forced | None:
    """The override to record, None without `force`; raises ForceWithoutReason."""
    if not force:
        return None
    if not reason.strip():
        raise ForceWithoutReason("forcing past the declared constraints needs a reason (--reason TEXT)")
    return Forced(reason=reason.strip())


def constraints_for(env: Environment, desired: DesiredState) -> Constraints | None:
    """The manifest's `constraints:` section, else `constraints.yaml` beside the topology.

    Raises InputError (file, line, field) for a bad document or a type the system lacks.
    """
    return load_constraints(
        topology_dir=env.topology_dir,
        manifest_raw=desired.manifest.raw,
        manifest_path=desired.manifest.path,
        types={c.component_type for c in desired.topology.components},
    )


def constraints_snapshot(env: Environment, desired: DesiredState) -> dict[str, str] | None:
    """What a deployment keeps of a constraints *file* (a manifest's section is in its snapshot):
    later edits of constraints.yaml only affect the next deployment, as for the manifest."""
    constraints = constraints_for(env, desired)
    if constraints is None or constraints_from_manifest(desired.manifest.raw, path=desired.manifest.path):
        return None
    return {"path": constraints.file, "raw": Path(constraints.file).read_text("utf-8")}


def constraints_restore(desired: DesiredState, snapshot: dict[str, str] | None) -> Constraints | None:
    section = constraints_from_manifest(desired.manifest.raw, path=desired.manifest.path)
    if section is not None or not snapshot:
        return section
    return parse_constraints(snapshot["raw"].encode(), path=Path(snapshot["path"]))


def plan_verdict(runner: InterfaceRunner, plan: Plan, constraints: Constraints, scratch: Path) -> Verdict:
    return check_plan(plan, constraints, rollback_support(runner, plan.installing(), scratch))


def verdict_as_json(verdict: Verdict) -> dict[str, Any]:
    """The `constraints` part of a plan report: the path, each step's versions and verdict."""
    by_step = {v.step: v for v in verdict.violations}
    first = verdict.first
    return {
        "file": verdict.constraints.file,
        "ok": verdict.ok,
        "end_state": {
            "system_version": verdict.end_row.system_version if verdict.end_row else None,
            "row": verdict.end_row.where if verdict.end_row else None,
            "line": verdict.end_row.line if verdict.end_row else None,
            "versions": dict(zip([s.key for s in verdict.slots], verdict.end_state(), strict=True)),
        },
        "orders": list(verdict.orders),
        "components": [
            {
                "key": s.key,
                "component_type": s.component_type,
                "from": s.old,
                "to": s.new,
                "order": verdict.orders[s.group] if s.group is not None else None,
                "rolls_back": s.rolls_back,
            }
            for s in verdict.slots
        ],
        "path": [
            {
                "step": step.label,
                "phase": step.phase,
                "versions": {
                    s.key: sorted(cell, key=lambda v: v != s.old)
                    for s, cell in zip(verdict.slots, step.cells, strict=True)
                },
                "moving": step.moving(verdict.slots),
                "violation": _violation_json(verdict, by_step[i]) if i in by_step else None,
            }
            for i, step in enumerate(verdict.path)
        ],
        "first_violation": _violation_json(verdict, first) if first else None,
        "reasons": verdict.reasons(),
    }


def _violation_json(verdict: Verdict, violation: Violation) -> dict[str, Any]:
    return {
        "step": verdict.path[violation.step].label,
        "row": violation.row.where,
        "line": violation.row.line,
        "combination": violation.row.combination,
        "state": dict(zip([s.key for s in verdict.slots], violation.state, strict=True)),
        "message": verdict.describe(violation),
    }
