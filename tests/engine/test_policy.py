"""docs/policy.md: the policy.yaml parser (every problem at once, with file, line and field) and
the machine's hooks for gates and the health window, with in-process fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.engine.test_machine import TWO_GROUPS, FakeInterfaces, FakeJournal, artifacts, plan_of
from updates.engine.artifact import ArtifactInfo
from updates.engine.machine import Machine, Options, RunState
from updates.engine.manifest import InputError
from updates.engine.policy import Policy, parse_policy

__all__ = ["artifacts"]
REPO = Path(__file__).resolve().parents[2]


def _parse(text: str, tmp_path: Path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return parse_policy(text.encode(), path=path, data_dir=REPO / "demo")


def test_the_demo_example_is_a_valid_policy(tmp_path: Path) -> None:
    example = REPO / "demo" / "system" / "policy.yaml.example"
    policy = parse_policy(example.read_bytes(), path=example, data_dir=REPO / "demo")
    gate = policy.gate("ArtifactCommit")
    assert gate is not None and (gate.timeout, gate.on_timeout) == (1800.0, "rollback")
    assert policy.health is not None and (policy.health.window, policy.health.interval) == (20.0, 5.0)
    assert policy.health.checks[0].argv() == [
        str(REPO / "demo" / "health-checks" / "can-bus-check"),
        "can0",
        "R998",
        "R456",
    ]
    assert policy.drift_interval == 900.0
    assert Policy.from_json(policy.to_json()) == policy


def test_it_reports_every_problem_with_its_line_and_field(tmp_path: Path) -> None:
    text = (
        "gates:\n"
        "  - before: ArtifactCommit\n"
        "    timeout: 30\n"  # 3
        "    on_timeout: later\n"  # 4
        "  - before: ArtifactCommit\n"  # 5
        "    timeout: 1m\n"
        "health:\n"
        "  window: 10s\n"
        "  interval: 1m\n"  # 9
        "  checks:\n"
        "    - name: bus\n"
        "      command: no-such-check\n"  # 12
        "      args: [1]\n"  # 13
        "drift:\n"
        "  every: 15m\n"  # 15
    )
    with pytest.raises(InputError) as raised:
        _parse(text, tmp_path)
    where = [(p.line, p.field) for p in raised.value.problems]
    assert where == [
        (3, "gates[0].timeout"),
        (4, "gates[0].on_timeout"),
        (5, "gates[1].before"),
        (9, "health.interval"),
        (12, "health.checks[0].command"),
        (13, "health.checks[0].args[0]"),
        (14, "drift.interval"),
        (15, "drift.every"),
    ]
    assert str(tmp_path / "policy.yaml") in str(raised.value)
    assert "already on line 2" in str(raised.value)


@dataclass
class FakeWatch:
    decisions: dict[str, str | None] = field(default_factory=dict)
    health_error: str | None = None
    asked: list[str] = field(default_factory=list)

    def gate(self, before: str) -> str | None:
        self.asked.append(before)
        return self.decisions.get(before)

    def health(self) -> str | None:
        self.asked.append("health")
        return self.health_error


def _machine(
    tmp_path: Path,
    plan_artifacts: dict[str, tuple[Path, ArtifactInfo]],
    watch: FakeWatch,
    gates: set[str],
    state: RunState | None = None,
) -> tuple[Machine, FakeInterfaces, FakeJournal]:
    fakes, journal = FakeInterfaces(), FakeJournal()
    options = Options(work_root=tmp_path / "work", gates=frozenset(gates), health_window=True)
    plan = plan_of(TWO_GROUPS, plan_artifacts)
    machine = Machine(plan=plan, runner=fakes, journal=journal, options=options, watch=watch, state=state)
    return machine, fakes, journal


def test_a_rejected_gate_before_commit_rolls_every_group_back_without_committing(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    watch = FakeWatch(decisions={"ArtifactCommit": "rejected by alice"})
    machine, fakes, _ = _machine(tmp_path, artifacts, watch, {"ArtifactCommit"})
    result = machine.run()
    assert (result.outcome, result.reason) == ("rolled_back", "rejected by alice")
    assert watch.asked == ["health", "ArtifactCommit"]  # the person decides on a healthy system
    assert all("ArtifactCommit" not in fakes.states(k) for k in ("gateway.G1", "rtos.R1", "rtos.R2"))
    assert "ArtifactRollback" in fakes.states("rtos.R1")


def test_a_failed_health_window_rolls_back_before_the_gate_is_asked(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    watch = FakeWatch(health_error="health check bus failed on run 3")
    machine, _, _ = _machine(tmp_path, artifacts, watch, {"ArtifactCommit"})
    result = machine.run()
    assert (result.outcome, result.reason) == ("rolled_back", "health check bus failed on run 3")
    assert watch.asked == ["health"]


def test_gates_before_download_and_the_first_reboot_are_asked_once(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    watch = FakeWatch()
    machine, fakes, _ = _machine(tmp_path, artifacts, watch, {"Download", "ArtifactReboot"})
    fakes.answers[("rtos.R1", "NeedsArtifactReboot")] = "Yes"
    assert machine.run().outcome == "succeeded"
    # No component of the first group reboots: the reboot gate waits for the group that does.
    assert watch.asked == ["Download", "ArtifactReboot", "health"]


def test_a_run_that_died_at_a_gate_waits_there_again_instead_of_rolling_back(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    first = FakeWatch()
    dying, _, journal = _machine(tmp_path, artifacts, first, {"ArtifactCommit"})
    # Stop the first run at the gate as a killed process would: its last checkpoint is the wait.
    first.gate = lambda before: (_ for _ in ()).throw(SystemExit)  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        dying.run()
    assert journal.checkpoints[-1] == ("install", 2, "ArtifactCommit")
    saved = RunState.from_json(dying.state.to_json())
    assert saved.gate == "ArtifactCommit"
    second = FakeWatch()
    resumed, fakes, _ = _machine(tmp_path, artifacts, second, {"ArtifactCommit"}, state=saved)
    resumed.recover_after_crash()
    assert resumed.run().outcome == "succeeded"
    assert second.asked == ["ArtifactCommit"]  # the window had passed; only the gate again
    assert "ArtifactRollback" not in fakes.states("rtos.R1")
