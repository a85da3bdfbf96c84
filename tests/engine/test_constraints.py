"""The constraints document (issue 13 contract), the states a plan passes through, and --suggest-order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updates.engine.constraints import (
    Constraints,
    Pattern,
    Row,
    constraints_from_manifest,
    load_constraints,
    parse_constraints,
)
from updates.engine.manifest import InputError, parse_manifest
from updates.engine.transitions import MAX_SUGGEST_TYPES, Slot, TooManyTypes, check_slots, suggest_orders

# The seed's two tables, exactly as the issue writes them (also used by the integration tests).
SEED = (Path(__file__).parent / "fixtures" / "seed_constraints.yaml").read_bytes()


def seed() -> Constraints:
    return parse_constraints(SEED, path=Path("/etc/orch/constraints.yaml"))


def demo_slots(gateway: int = 0, rtos: int = 1, *, rolls_back: bool = True) -> list[Slot]:
    """The demo system v1 -> v2: gateway G13, rtos R998 and R456, in groups by index."""
    return [
        Slot("gateway.G13", "gateway", "gateway-v1", "gateway-v2", gateway, True),
        Slot("rtos.R998", "rtos", "rtos-v1", "rtos-v2", rtos, rolls_back),
        Slot("rtos.R456", "rtos", "rtos-v1", "rtos-v2", rtos, rolls_back),
    ]


# ----- the document -------------------------------------------------------------------------------


def test_it_reads_the_seed_tables() -> None:
    c = seed()
    assert [r.system_version for r in c.end_states] == ["v.1", "v.2"]
    assert [(r.combination, r.acceptable, r.line) for r in c.transition_states] == [
        ("gateway-v1 + rtos-v2", False, 9),
        ("gateway-v2 + rtos-v1", True, 11),
    ]
    working = c.end_state([("gateway", "gateway-v2"), ("rtos", "rtos-v2.1"), ("rtos", "rtos-v2")])
    assert working is not None and working.system_version == "v.2"


def test_it_matches_a_row_only_when_every_component_of_a_type_matches() -> None:
    c = seed()
    assert c.forbidding([("gateway", "gateway-v1"), ("rtos", "rtos-v2"), ("rtos", "rtos-v2")]) is not None
    assert c.forbidding([("gateway", "gateway-v1"), ("rtos", "rtos-v2"), ("rtos", "rtos-v1")]) is None
    assert c.end_state([("gateway", "gateway-v2"), ("rtos", "rtos-v2"), ("rtos", "rtos-v1")]) is None
    # A type the state lacks never matches (no vacuous truth).
    assert c.end_state([("gateway", "gateway-v1")]) is None


def test_it_reports_every_problem_with_file_line_and_field() -> None:
    data = b"""\
api_version: mender/v1
kind: constraints
end_states:
  - system_version: 2
    versions: {gateway: gateway-v1}
  - system_version: "v.2"
    versions: {}
  - system_version: "v.2"
    version: {gateway: gateway-v2}
transition_states:
  - versions: {gateway: gateway-v1, rtos: ""}
    acceptable: "no"
  - versions: {gateway: gateway-v2}
"""
    with pytest.raises(InputError) as caught:
        parse_constraints(data, path=Path("/c/constraints.yaml"))
    lines = str(caught.value).splitlines()
    assert lines == [
        "/c/constraints.yaml:4: end_states[0].system_version: must be a non-empty string, got the number 2; "
        "put the value in quotes to make it a string",
        "/c/constraints.yaml:7: end_states[1].versions: must name at least one component type",
        "/c/constraints.yaml:8: end_states[2].versions: is required but missing",
        "/c/constraints.yaml:9: end_states[2].version: unknown key: did you mean 'versions' "
        "(component type: artifact name)?",
        "/c/constraints.yaml:11: transition_states[0].versions.rtos: must be a non-empty string, got an empty string",
        "/c/constraints.yaml:12: transition_states[0].acceptable: must be true or false, got the string 'no'; "
        "write true or false without quotes",
        "/c/constraints.yaml:13: transition_states[1].acceptable: is required but missing",
    ]


def test_it_refuses_a_wrong_kind_and_missing_end_states() -> None:
    with pytest.raises(InputError) as caught:
        parse_constraints(b"api_version: mender/v1\nkind: topology\n", path=Path("/c/x.yaml"))
    assert str(caught.value).splitlines() == [
        "/c/x.yaml:1: end_states: is required but missing: list the working combinations",
        "/c/x.yaml:2: kind: must be 'constraints', got 'topology' (this file is a topology)",
    ]


def test_it_refuses_two_end_states_with_one_system_version() -> None:
    data = SEED.replace(b'"v.2"', b'"v.1"')
    with pytest.raises(InputError, match=r":6: end_states\[1\].system_version: 'v.1' is already"):
        parse_constraints(data, path=Path("/c/constraints.yaml"))


def test_it_names_a_type_the_system_lacks() -> None:
    with pytest.raises(InputError, match=r":5: end_states\[0\].versions.rtos: the system has no component"):
        parse_constraints(SEED, path=Path("/c.yaml"), types={"gateway"})


MANIFEST = b"""\
api_version: mender/v1
kind: manifest
name: system-core-v2
system_types_compatible: [system-core]
component_types:
  gateway:
    artifact_name: gateway-v2
    update_strategy: {order: 10}
constraints:
  end_states:
    - system_version: "v.9"
      versions: {gateway: "gateway-*"}
"""


def test_a_manifest_section_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "constraints.yaml").write_bytes(SEED)
    manifest = tmp_path / "m.yaml"
    manifest.write_bytes(MANIFEST)
    parse_manifest(MANIFEST, path=manifest)  # the manifest parser accepts the section
    found = load_constraints(topology_dir=tmp_path, manifest_raw=MANIFEST, manifest_path=manifest)
    assert found is not None and [r.system_version for r in found.end_states] == ["v.9"]
    without = MANIFEST.split(b"constraints:")[0]
    found = load_constraints(topology_dir=tmp_path, manifest_raw=without, manifest_path=manifest)
    assert found is not None and found.file == str(tmp_path / "constraints.yaml")


def test_errors_in_a_manifest_section_name_the_manifest_lines() -> None:
    bad = MANIFEST.replace(b'"gateway-*"', b"[a]").replace(
        b"  end_states:", b"  kind: topology\n  end_states:"
    )
    with pytest.raises(InputError) as caught:
        constraints_from_manifest(bad, path=Path("/m/manifest.yaml"))
    assert str(caught.value).splitlines() == [
        "/m/manifest.yaml:10: constraints.kind: must be 'constraints', got the string 'topology'",
        "/m/manifest.yaml:13: constraints.end_states[0].versions.gateway: must be a non-empty string, got a list",
    ]


# ----- the path and the verdict ---------------------------------------------------------------------


def test_gateway_first_passes() -> None:
    verdict = check_slots(seed(), demo_slots(0, 1), [10, 20])
    assert verdict.ok
    assert verdict.end_row is not None and verdict.end_row.system_version == "v.2"
    assert [s.label for s in verdict.path] == ["now", "order 10", "order 20", "end"]


def test_swapped_orders_fail_at_the_first_step_naming_the_forbidden_combination() -> None:
    verdict = check_slots(seed(), demo_slots(1, 0), [10, 20])
    assert not verdict.ok
    first = verdict.first
    assert first is not None and verdict.path[first.step].label == "order 10"
    assert first.row.combination == "gateway-v1 + rtos-v2"
    assert first.state == ("gateway-v1", "rtos-v2", "rtos-v2")
    assert (
        "step 'order 10' would pass through the forbidden combination gateway-v1 + rtos-v2"
        in (verdict.reasons()[0])
    )


def test_one_group_for_all_counts_every_interleaving() -> None:
    verdict = check_slots(seed(), demo_slots(0, 0), [10])
    assert verdict.first is not None and verdict.first.state == ("gateway-v1", "rtos-v2", "rtos-v2")


def test_a_mixed_end_state_is_refused() -> None:
    slots = demo_slots(0, 1)
    slots[1:] = [Slot(s.key, s.component_type, s.old, s.old, None, True) for s in slots[1:]]
    verdict = check_slots(seed(), slots, [10])
    assert not verdict.violations and verdict.end_row is None and not verdict.ok
    assert "matches no end_states row" in verdict.reasons()[0]


def test_the_rollback_path_of_components_that_cannot_roll_back_is_checked() -> None:
    # rtos boards without rollback: a failure in group 20 leaves them on v2 while the gateway
    # goes back to v1, the forbidden combination.
    verdict = check_slots(seed(), demo_slots(0, 1, rolls_back=False), [10, 20])
    assert verdict.first is not None
    assert verdict.path[verdict.first.step].label == "rollback order 10 (failure in order 20)"
    assert verdict.first.state == ("gateway-v1", "rtos-v2", "rtos-v2")


def test_the_starting_state_itself_is_not_a_violation() -> None:
    broken = [
        Slot("gateway.G13", "gateway", "gateway-v1", "gateway-v2", 0, True),
        Slot("rtos.R998", "rtos", "rtos-v2", "rtos-v2", None, True),
    ]
    verdict = check_slots(seed(), broken, [10])
    assert verdict.ok  # gateway-v1 + rtos-v2 is where the system is; the update leaves it


def test_suggest_order_finds_gateway_before_rtos() -> None:
    suggestion = suggest_orders(seed(), demo_slots(1, 0))
    assert suggestion.orders == ({"gateway": 10, "rtos": 20},)


def test_suggest_order_names_the_conflicting_rows_when_none_satisfies() -> None:
    both = SEED.replace(b"acceptable: true", b"acceptable: false")
    suggestion = suggest_orders(parse_constraints(both, path=Path("/c.yaml")), demo_slots())
    assert suggestion.orders == ()
    assert [r.combination for r in suggestion.conflicts] == ["gateway-v1 + rtos-v2", "gateway-v2 + rtos-v1"]


# ----- property: the per-step check equals brute force over every run ---------------------------


def reachable(slots: Sequence[Slot], groups: int) -> Iterator[tuple[str, ...]]:
    """Every state a run can show, by brute force: each group's members move in every order,
    a failure can come after any prefix of moves, and rollback runs groups descending, each in
    every order, moving back only the touched components that support rollback."""
    members = [[i for i, s in enumerate(slots) if s.group == g] for g in range(groups)]
    state = [s.old for s in slots]
    for g in range(groups):
        for order in itertools.permutations(members[g]):
            for cut in range(len(order) + 1):
                current = list(state)
                for i in order[:cut]:
                    current[i] = slots[i].new
                    yield tuple(current)
                yield from _rollbacks(slots, members, g, current, set(order[:cut]))
        for i in members[g]:
            state[i] = slots[i].new
        yield tuple(state)


def _rollbacks(
    slots: Sequence[Slot], members: list[list[int]], failed: int, state: list[str], touched: set[int]
) -> Iterator[tuple[str, ...]]:
    touched = touched | {i for g in range(failed) for i in members[g]}
    paths: list[list[str]] = [state]
    for g in range(failed, -1, -1):
        back = [i for i in members[g] if i in touched and slots[i].rolls_back]
        nxt = []
        for current in paths:
            for order in itertools.permutations(back):
                moving = list(current)
                for i in order:
                    moving[i] = slots[i].old
                    yield tuple(moving)
            done = list(current)
            for i in back:
                done[i] = slots[i].old
            nxt.append(done)
        paths = nxt[:1]


TYPES = ("gateway", "rtos", "sensor")


@st.composite
def systems(draw: st.DrawFn) -> tuple[Constraints, list[Slot], int]:
    count = draw(st.integers(1, 4))
    groups = draw(st.integers(1, 3))
    slots = []
    for i in range(count):
        ctype = draw(st.sampled_from(TYPES))
        installs = draw(st.booleans())
        old = f"{ctype}-v{draw(st.integers(1, 2))}"
        new = f"{ctype}-v3" if installs else old
        group = draw(st.integers(0, groups - 1)) if installs else None
        slots.append(Slot(f"{ctype}.{i}", ctype, old, new, group, draw(st.booleans())))
    used = sorted({s.group for s in slots if s.group is not None})
    slots = [
        Slot(s.key, s.component_type, s.old, s.new, used.index(s.group), s.rolls_back)
        if s.group is not None
        else s
        for s in slots
    ]
    rows = []
    for index in range(draw(st.integers(1, 3))):
        named = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True))
        patterns = tuple(
            Pattern(t, draw(st.sampled_from([f"{t}-v1", f"{t}-v2", f"{t}-v3", "*", f"{t}-v[12]"])), 1)
            for t in named
        )
        rows.append(Row("transition_states", index, index + 1, patterns, acceptable=False))
    return Constraints("c.yaml", (), tuple(rows)), slots, len(used)


@settings(max_examples=300, deadline=None)
@given(systems())
def test_the_step_check_agrees_with_brute_force(system: tuple[Constraints, list[Slot], int]) -> None:
    constraints, slots, groups = system
    verdict = check_slots(constraints, slots, [10 * (g + 1) for g in range(groups)])
    start = tuple(s.old for s in slots)
    bad = [
        state
        for state in reachable(slots, groups)
        if state != start
        and constraints.forbidding([(s.component_type, v) for s, v in zip(slots, state, strict=True)])
    ]
    assert bool(verdict.violations) == bool(bad), (bad[:3], [verdict.describe(v) for v in verdict.violations])
    for v in verdict.violations:  # every reported state is one a run can really show
        assert v.state in set(reachable(slots, groups)) and v.state != start


def test_suggest_order_refuses_too_many_types_to_try() -> None:
    slots = [Slot(f"t{i}.x", f"t{i}", "a", "b", 0, True) for i in range(MAX_SUGGEST_TYPES + 1)]
    with pytest.raises(TooManyTypes, match="6 component types change"):
        suggest_orders(seed(), slots)
