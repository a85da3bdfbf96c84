"""The state machine driven in-process: a fake journal and fake interfaces (no subprocess), so each
rule of the flow is checked in milliseconds. The CLI integration tests run the same flow with
real interface executables; these pin the machine's own decisions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from updates.engine.artifact import ArtifactInfo, write_artifact
from updates.engine.interface import CallResult
from updates.engine.machine import Machine, Options, Result, RunState
from updates.engine.manifest import Component
from updates.engine.planner import Plan, Target, component_key
from updates.engine.workdir import DownloadError, DownloadOutcome, PayloadSource

QUERIES = {"NeedsUnpackedArtifact", "ProvidePayloadFileSizes", "NeedsArtifactReboot", "SupportsRollback"}


@dataclass
class FakeInterfaces:
    """Every component's interface, in-process. Answers queries, fails the (key, state) pairs in
    `fail`, and logs (key, state) of every call in order; `barrier_on` makes the calls of that
    state wait for each other (they only meet if the machine runs them at the same time)."""

    fail: set[tuple[str, str]] = field(default_factory=set)
    answers: dict[tuple[str, str], str] = field(default_factory=dict)
    barrier_on: str = ""
    barrier_parties: int = 0
    log: list[tuple[str, str]] = field(default_factory=list)
    downloaded: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(max(1, self.barrier_parties))

    def argv(
        self,
        *,
        interface: str,
        state: str,
        workdir: Path,
        component_type: str,
        component_id: str | None,
        args: Sequence[str],
    ) -> list[str]:
        return [interface, state, str(workdir), component_type, *args]

    def call(self, argv: Sequence[str], *, cwd: Path) -> CallResult:
        key, state = Path(argv[2]).name, argv[1]
        with self.lock:
            self.log.append((key, state))
        if state == self.barrier_on:
            self.barrier.wait(timeout=5)  # BrokenBarrierError when run one after the other
        failed = (key, state) in self.fail
        stdout = self.answers.get((key, state), "Yes" if state == "SupportsRollback" else "")
        return CallResult(
            tuple(argv), 1 if failed else 0, stdout, "injected" if failed else "", 0.0, 0.0, False
        )

    def download(
        self, argv: Sequence[str], *, tree: Path, payloads: Iterable[PayloadSource], with_sizes: bool
    ) -> DownloadOutcome:
        result = self.call(argv, cwd=tree)
        if not result.ok:
            raise DownloadError("the interface exited with code 1", result=result)
        for payload in payloads:  # read to the end: the reader verifies checksums there
            self.downloaded[f"{Path(argv[2]).name}/{payload.name}"] = payload.read(-1)
        return DownloadOutcome(result=result, mode="streams", files=())

    def with_session_log(self, path: Path) -> FakeInterfaces:
        return self

    def states(self, key: str) -> list[str]:
        return [s for k, s in self.log if k == key and s not in QUERIES]

    def index(self, key: str, state: str) -> int:
        return self.log.index((key, state))


@dataclass
class FakeJournal:
    checkpoints: list[tuple[str, int, str]] = field(default_factory=list)
    started: list[tuple[str, str]] = field(default_factory=list)
    finished: int = 0

    def checkpoint(self, state: RunState) -> None:
        self.checkpoints.append((state.phase, state.group, state.step))

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int:
        self.started.append((component, state))
        return len(self.started)

    def call_finished(
        self, step: int, *, result: CallResult | None, answer: str | None = None, error: str | None = None
    ) -> None:
        self.finished += 1


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, ArtifactInfo]]:
    """One small real artifact per component type (the machine streams its payload)."""
    root = tmp_path_factory.mktemp("artifacts")
    made = {}
    for ctype in ("gateway", "rtos"):
        payload = root / f"{ctype}.img"
        payload.write_bytes(ctype.encode() * 100)
        path = root / f"{ctype}-v2.mender"
        info = write_artifact(
            path,
            kind="module-image",
            name=f"{ctype}-v2",
            device_types=[ctype],
            files=[payload],
            payload_type=ctype,
        )
        made[ctype] = (path, info)
    return made


def plan_of(
    groups: dict[int, list[tuple[str, str]]], artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> Plan:
    """{order: [(component_type, id), ...]} -> a plan installing every component."""
    targets = []
    for order, members in groups.items():
        for ctype, cid in members:
            path, info = artifacts[ctype]
            component = Component(ctype, ctype, (), None)
            current = {f"rootfs-image.{ctype}.version": f"{ctype}-v1"}
            key = component_key(ctype, cid)
            targets.append(Target(key, component, cid, order, current, "install", path, info))
    keyed = tuple(
        (order, tuple(component_key(t, c) for t, c in members)) for order, members in sorted(groups.items())
    )
    return Plan(targets=tuple(targets), groups=keyed)


TWO_GROUPS = {10: [("gateway", "G1")], 20: [("rtos", "R1"), ("rtos", "R2")]}


def run(
    tmp_path: Path, fakes: FakeInterfaces, plan: Plan, journal: FakeJournal | None = None
) -> tuple[Result, FakeJournal]:
    journal = journal or FakeJournal()
    machine = Machine(plan=plan, runner=fakes, journal=journal, options=Options(work_root=tmp_path / "work"))
    return machine.run(), journal


def test_it_installs_group_by_group_and_commits_only_after_every_group_installed(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    fakes = FakeInterfaces()
    result, journal = run(tmp_path, fakes, plan_of(TWO_GROUPS, artifacts))
    assert result.outcome == "succeeded"
    for key in ("gateway.G1", "rtos.R1", "rtos.R2"):
        assert fakes.states(key) == ["Download", "ArtifactInstall", "ArtifactCommit", "Cleanup"]
    last_install = max(fakes.index(k, "ArtifactInstall") for k in ("gateway.G1", "rtos.R1", "rtos.R2"))
    assert fakes.index("gateway.G1", "ArtifactInstall") < fakes.index("rtos.R1", "Download")
    assert min(fakes.index(k, "ArtifactCommit") for k in ("gateway.G1", "rtos.R1", "rtos.R2")) > last_install
    assert fakes.index("gateway.G1", "ArtifactCommit") < fakes.index("rtos.R1", "ArtifactCommit")
    assert fakes.downloaded["rtos.R2/rtos.img"] == b"rtos" * 100
    assert journal.finished == len(journal.started) == len(fakes.log)


def test_it_persists_the_position_before_every_state(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    _, journal = run(tmp_path, FakeInterfaces(), plan_of(TWO_GROUPS, artifacts))
    steps = [(phase, group, step) for phase, group, step in journal.checkpoints if step]
    assert steps == [
        ("install", 0, "Download"),
        ("install", 0, "ArtifactInstall"),
        ("install", 0, "ArtifactReboot"),
        ("install", 0, "ArtifactVerifyReboot"),
        ("install", 1, "Download"),
        ("install", 1, "ArtifactInstall"),
        ("install", 1, "ArtifactReboot"),
        ("install", 1, "ArtifactVerifyReboot"),
        ("commit", 0, "ArtifactCommit"),
        ("commit", 1, "ArtifactCommit"),
        ("cleanup", 0, "Cleanup"),
        ("cleanup", 1, "Cleanup"),
        ("done", 2, "Cleanup"),
    ]


def test_it_runs_a_group_in_parallel(tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]) -> None:
    # Three components of one group meet at a barrier inside ArtifactInstall: one after the other
    # they would never all arrive, and the barrier would break.
    group = {10: [("rtos", "R1"), ("rtos", "R2"), ("rtos", "R3")]}
    fakes = FakeInterfaces(barrier_on="ArtifactInstall", barrier_parties=3)
    result, _ = run(tmp_path, fakes, plan_of(group, artifacts))
    assert result.outcome == "succeeded"
    assert not fakes.barrier.broken


def test_it_rolls_back_the_newest_group_first(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    fakes = FakeInterfaces(fail={("rtos.R2", "ArtifactCommit")})
    result, _ = run(tmp_path, fakes, plan_of(TWO_GROUPS, artifacts))
    assert result.outcome == "rolled_back"
    assert "rtos.R2: ArtifactCommit exited with 1: injected" in result.reason
    assert fakes.states("gateway.G1") == [
        "Download",
        "ArtifactInstall",
        "ArtifactCommit",
        "ArtifactRollback",
        "ArtifactFailure",
        "Cleanup",
    ]
    assert fakes.states("rtos.R1")[-3:] == ["ArtifactRollback", "ArtifactFailure", "Cleanup"]
    newest = max(fakes.index(k, "ArtifactRollback") for k in ("rtos.R1", "rtos.R2"))
    assert fakes.index("gateway.G1", "ArtifactRollback") > newest
    assert min(fakes.index(k, "Cleanup") for k in ("gateway.G1", "rtos.R1", "rtos.R2")) > fakes.index(
        "gateway.G1", "ArtifactFailure"
    )


def test_a_failed_download_leads_to_cleanup_only(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    fakes = FakeInterfaces(fail={("rtos.R1", "Download")})
    result, _ = run(tmp_path, fakes, plan_of(TWO_GROUPS, artifacts))
    assert result.outcome == "rolled_back"
    assert result.reason == "rtos.R1: Download failed: the interface exited with code 1"
    assert fakes.states("rtos.R1") == ["Download", "Cleanup"]
    assert fakes.states("rtos.R2") == ["Download", "Cleanup"]  # its group never reached ArtifactInstall
    assert fakes.states("gateway.G1") == [
        "Download",
        "ArtifactInstall",
        "ArtifactRollback",
        "ArtifactFailure",
        "Cleanup",
    ]


def test_it_reports_inconsistent_when_a_touched_component_cannot_roll_back(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    fakes = FakeInterfaces(
        fail={("rtos.R2", "ArtifactInstall"), ("rtos.R1", "ArtifactRollback")},
        answers={("gateway.G1", "SupportsRollback"): "No"},
    )
    result, _ = run(tmp_path, fakes, plan_of(TWO_GROUPS, artifacts))
    assert result.outcome == "inconsistent"
    assert set(result.components) == {"gateway.G1", "rtos.R1"}
    assert result.reason.endswith("could not roll back: gateway.G1, rtos.R1")
    assert "ArtifactRollback" not in fakes.states("gateway.G1")  # it said it cannot
    assert fakes.states("rtos.R2")[-3:] == ["ArtifactRollback", "ArtifactFailure", "Cleanup"]


def test_it_stops_before_commit_and_resumes_from_the_persisted_position(
    tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]
) -> None:
    plan = plan_of(TWO_GROUPS, artifacts)
    fakes, journal = FakeInterfaces(), FakeJournal()
    options = Options(work_root=tmp_path / "work", stop_before=frozenset({"ArtifactCommit"}))
    machine = Machine(plan=plan, runner=fakes, journal=journal, options=options)
    assert machine.run().outcome == "stopped"
    assert not any(s == "ArtifactCommit" for _, s in fakes.log)
    saved = RunState.from_json(machine.state.to_json())
    again = Machine(
        plan=plan, runner=fakes, journal=journal, options=Options(work_root=tmp_path / "work"), state=saved
    )
    assert again.run().outcome == "succeeded"
    assert fakes.states("rtos.R1") == ["Download", "ArtifactInstall", "ArtifactCommit", "Cleanup"]


def test_the_in_process_flow_is_fast(tmp_path: Path, artifacts: dict[str, tuple[Path, ArtifactInfo]]) -> None:
    # Not a benchmark: a guard that these tests stay unit tests (no subprocess, no sleeps).
    started = time.monotonic()
    many = {order: [("rtos", f"R{order}{i}") for i in range(4)] for order in range(1, 6)}
    assert run(tmp_path, FakeInterfaces(), plan_of(many, artifacts))[0].outcome == "succeeded"
    assert time.monotonic() - started < 10
