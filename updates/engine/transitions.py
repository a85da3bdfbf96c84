"""Every system state a deployment can pass through, checked against the declared constraints.

When a component's version changes (docs/constraints.md explains the choice): a component counts
as running its new version from the moment its `ArtifactInstall` starts — the protocol says that
state installs *and activates* (docs/protocol.md §4.3), and from then on the component is eligible
for rollback — until its `ArtifactRollback` completes. `ArtifactCommit` changes nothing that runs
(it only makes the change permanent), and a failed `Download` never activates anything. A
component whose `SupportsRollback` answer is not `Yes` is never rolled back by the machine, so on
the rollback path it stays new.

So the states a run can show are described exactly by *steps*, each giving per component the set of
versions it may have while the step runs:

- forward, order group g: earlier groups new, later groups old, each component of g old or new
  (its members move in parallel, so every interleaving inside the group — every subset — counts);
- rollback after a failure in group f, while group j (j <= f) rolls back: components that roll
  back are old above j, old or new in j, new below j; components that cannot roll back stay new
  wherever they were touched (old or new in f itself: the failure may have come before them).

With every component able to roll back, the rollback steps are the forward steps again; they are
listed only when they differ. A row forbids a step when each component of every type it names can
take a version matching the row's glob: components are independent within a step, so this is exact
without enumerating the 2^n interleavings.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from updates.engine.constraints import Constraints, Member, Row
from updates.engine.errors import InvalidInput
from updates.engine.planner import Plan, SelectionError

Phase = Literal["now", "forward", "rollback", "end"]
MAX_SUGGEST_TYPES = 5  # 541 ordered groupings; 6 types (4,683) took seconds


@dataclass(frozen=True)
class Slot:
    """One component as the check sees it; `group` indexes `Path.orders` (None: not installed)."""

    key: str
    component_type: str
    old: str
    new: str
    group: int | None
    rolls_back: bool


@dataclass(frozen=True)
class Step:
    label: str
    phase: Phase
    cells: tuple[frozenset[str], ...]  # per slot: the versions it may run during the step

    def moving(self, slots: Sequence[Slot]) -> list[str]:
        return [s.key for s, cell in zip(slots, self.cells, strict=True) if len(cell) > 1]


@dataclass(frozen=True)
class Violation:
    step: int  # index in the path
    row: Row
    state: tuple[str, ...]  # one forbidden state of that step, a version per slot


@dataclass(frozen=True)
class Verdict:
    constraints: Constraints
    slots: tuple[Slot, ...]
    orders: tuple[int, ...]
    path: tuple[Step, ...]
    violations: tuple[Violation, ...]
    end_row: Row | None

    @property
    def ok(self) -> bool:
        return self.end_row is not None and not self.violations

    @property
    def first(self) -> Violation | None:
        return self.violations[0] if self.violations else None

    def end_state(self) -> tuple[str, ...]:
        return tuple(s.new for s in self.slots)

    def reasons(self) -> list[str]:
        """Why the plan is refused, one line per problem, first violation first."""
        lines = []
        if self.end_row is None:
            end = ", ".join(f"{s.key}={s.new}" for s in self.slots)
            lines.append(
                f"{self.constraints.file}: end_states: the end state ({end}) matches no end_states row: "
                "it is not a declared working system"
            )
        lines.extend(self.describe(v) for v in self.violations[:1])
        return lines

    def describe(self, violation: Violation) -> str:
        step = self.path[violation.step]
        state = ", ".join(f"{s.key}={v}" for s, v in zip(self.slots, violation.state, strict=True))
        return (
            f"{self.constraints.file}:{violation.row.line}: {violation.row.where}: step '{step.label}' would pass through "
            f"the forbidden combination {violation.row.combination} ({state})"
        )


# --------------------------------------------------------------------------------------------------
# The path


def plan_slots(plan: Plan, rollback: Mapping[str, bool]) -> tuple[tuple[Slot, ...], tuple[int, ...]]:
    """The plan's components in plan order, and the orders of the groups that install something."""
    installing = {t.key for t in plan.installing()}
    orders = tuple(o for o, keys in plan.groups if any(k in installing for k in keys))
    slots = tuple(
        Slot(
            key=t.key,
            component_type=t.component.component_type,
            old=t.current_version,
            new=t.target_version,
            group=orders.index(t.order) if t.key in installing else None,
            rolls_back=rollback.get(t.key, False),
        )
        for t in plan.targets
    )
    return slots, orders


def path_of(slots: Sequence[Slot], orders: Sequence[int]) -> tuple[Step, ...]:
    now = Step("now", "now", tuple(frozenset({s.old}) for s in slots))
    forward = [_forward(slots, g, order) for g, order in enumerate(orders)]
    end = Step("end", "end", tuple(frozenset({s.new}) for s in slots))
    seen = {step.cells for step in (now, *forward, end)}
    back = []
    for f, j in _rollback_points(len(orders)):
        step = _rollback(slots, f, j, orders)
        if step.cells not in seen:
            seen.add(step.cells)
            back.append(step)
    return (now, *forward, end, *back)


def _rollback_points(groups: int) -> Iterator[tuple[int, int]]:
    for failed in range(groups):
        for rolling in range(failed, -1, -1):
            yield failed, rolling


def _forward(slots: Sequence[Slot], g: int, order: int) -> Step:
    def cell(s: Slot) -> frozenset[str]:
        if s.group is None or s.group > g:
            return frozenset({s.old})
        return frozenset({s.new}) if s.group < g else frozenset({s.old, s.new})

    return Step(f"order {order}", "forward", tuple(cell(s) for s in slots))


def _rollback(slots: Sequence[Slot], failed: int, rolling: int, orders: Sequence[int]) -> Step:
    def cell(s: Slot) -> frozenset[str]:
        if s.group is None or s.group > failed:
            return frozenset({s.old})
        if s.group == failed and (s.group == rolling or not s.rolls_back):
            return frozenset({s.old, s.new})  # touched or not when the failure came
        if not s.rolls_back or s.group < rolling:
            return frozenset({s.new})
        return frozenset({s.old, s.new}) if s.group == rolling else frozenset({s.old})

    label = f"rollback order {orders[rolling]} (failure in order {orders[failed]})"
    return Step(label, "rollback", tuple(cell(s) for s in slots))


# --------------------------------------------------------------------------------------------------
# The check


def check_plan(plan: Plan, constraints: Constraints, rollback: Mapping[str, bool]) -> Verdict:
    """Check every state the plan can pass through; `rollback` is each key's SupportsRollback."""
    slots, orders = plan_slots(plan, rollback)
    return check_slots(constraints, slots, orders)


def check_slots(constraints: Constraints, slots: Sequence[Slot], orders: Sequence[int]) -> Verdict:
    path = path_of(slots, orders)
    violations = []
    for index, step in enumerate(path):
        if step.phase == "now" or step.cells == path[0].cells:
            continue  # where the system already is: not something this deployment chose
        found = _forbidden_in(constraints, slots, step)
        if found is not None:
            violations.append(Violation(index, *found))
    end_row = constraints.end_state(_members(slots, tuple(s.new for s in slots)))
    return Verdict(constraints, tuple(slots), tuple(orders), path, tuple(violations), end_row)


def _forbidden_in(
    constraints: Constraints, slots: Sequence[Slot], step: Step
) -> tuple[Row, tuple[str, ...]] | None:
    for row in constraints.forbidden_rows():
        state = _witness(row, slots, step)
        if state is not None:
            return row, state
    return None


def _witness(row: Row, slots: Sequence[Slot], step: Step) -> tuple[str, ...] | None:
    """A state of `step` that `row` matches, other than the starting state, or None.

    Per component the earliest version (old before new) that fits the row's glob for its type;
    unnamed types stay where they were. The starting state itself is exempt: the system is there
    already, and refusing would only keep it there. If the earliest choice is that state, one
    component that may also take another fitting version is moved.
    """
    globs = {p.component_type: p for p in row.patterns}
    fitting = []
    for slot, cell in zip(slots, step.cells, strict=True):
        pattern = globs.get(slot.component_type)
        fits = sorted((v for v in cell if pattern is None or pattern.matches(v)), key=lambda v: v != slot.old)
        if not fits:
            return None
        fitting.append(fits)
    state = [fits[0] for fits in fitting]
    if state == [s.old for s in slots]:
        moved = next((i for i, fits in enumerate(fitting) if len(fits) > 1), None)
        if moved is None:
            return None
        state[moved] = fitting[moved][1]
    return tuple(state) if row.matches(_members(slots, state)) else None


def _members(slots: Sequence[Slot], state: Sequence[str]) -> list[Member]:
    return [(s.component_type, v) for s, v in zip(slots, state, strict=True)]


def state_allowed(constraints: Constraints, members: Sequence[Member]) -> Row | None:
    """The forbidden row a concrete state matches, or None (for replaying a run's log)."""
    return constraints.forbidding(members)


# --------------------------------------------------------------------------------------------------
# Suggesting an order


@dataclass(frozen=True)
class Suggestion:
    orders: tuple[dict[str, int], ...]  # every satisfying `order` assignment, fewest groups first
    conflicts: tuple[Row, ...]  # when none satisfies: the rows that ruled the orders out
    end_row: Row | None
    types: tuple[str, ...]


class TooManyTypes(InvalidInput):
    """`--suggest-order` would have to try too many orders."""

    code = "too_many_types"


class ConstraintViolation(SelectionError):
    """The plan passes through a forbidden state or ends outside every working system."""

    code = "constraint_violation"

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reasons())
        self.verdict = verdict


def suggest_orders(constraints: Constraints, slots: Sequence[Slot]) -> Suggestion:
    """Every grouping of the installing component types into ordered groups, checked like a plan."""
    types = tuple(dict.fromkeys(s.component_type for s in slots if s.group is not None))
    if len(types) > MAX_SUGGEST_TYPES:
        raise TooManyTypes(
            f"{len(types)} component types change: too many to try every order (at most {MAX_SUGGEST_TYPES})"
        )
    found: list[dict[str, int]] = []
    conflicts: dict[tuple[int, int], Row] = {}
    end_row = constraints.end_state(_members(slots, tuple(s.new for s in slots)))
    for grouping in _ordered_groupings(types):
        rank = {t: i for i, group in enumerate(grouping) for t in group}
        trial = [replace(s, group=rank[s.component_type]) if s.group is not None else s for s in slots]
        verdict = check_slots(constraints, trial, [10 * (i + 1) for i in range(len(grouping))])
        if not verdict.violations:
            found.append({t: 10 * (rank[t] + 1) for t in types})
        for v in verdict.violations:
            conflicts.setdefault((v.row.line, v.row.index), v.row)
    ordered_conflicts = () if found else tuple(conflicts[k] for k in sorted(conflicts))
    return Suggestion(tuple(found), ordered_conflicts, end_row, types)


def _ordered_groupings(types: Sequence[str]) -> Iterator[tuple[tuple[str, ...], ...]]:
    """Ordered set partitions of `types`, fewest groups first (more parallel, fewer reboots)."""
    for count in range(1, len(types) + 1):
        for labels in itertools.product(range(count), repeat=len(types)):
            if set(labels) == set(range(count)):
                yield tuple(
                    tuple(t for t, lab in zip(types, labels, strict=True) if lab == g) for g in range(count)
                )
