"""Property (issue 13): random small systems and random constraints; every plan the checker
accepts is run with the demo's real sh interfaces, failures injected at random states, and every
state in the interfaces' own log of version changes (timeline.log) must be allowed.

The engine is driven in-process (inspection, selection, the check, the machine) so that an example
costs only its interface calls; the checker is asked exactly as `install` asks it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from updates.engine.artifact import write_artifact
from updates.engine.constraints import Constraints, Pattern, Row
from updates.engine.inspection import Inspector
from updates.engine.interface import CallResult, InterfaceRunner
from updates.engine.machine import Machine, Options, RunState
from updates.engine.manifest import Component, DesiredState, Manifest, Topology, TypeTarget
from updates.engine.planner import select
from updates.engine.preview import rollback_support
from updates.engine.transitions import check_plan

ROOT = Path(__file__).resolve().parents[2]
TYPES = ("gateway", "rtos", "sensor")  # gateway: NeedsArtifactReboot Yes; the others No
FAILING = ("Download", "ArtifactInstall", "ArtifactVerifyReboot", "ArtifactCommit")


class QuietJournal:
    def checkpoint(self, state: RunState) -> None:
        return None

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int:
        return 0

    def call_finished(
        self, step: int, *, result: CallResult | None, answer: str | None = None, error: str | None = None
    ) -> None:
        return None


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's interfaces (plus `sensor`, an RTOS-like third type) and v1..v3 artifacts per type."""
    root = tmp_path_factory.mktemp("constraints-template")
    subprocess.run(
        [str(ROOT / "demo" / "setup"), "--no-artifacts", str(root)], check=True, capture_output=True
    )
    shutil.copy(root / "share/interfaces/v1/rtos", root / "share/interfaces/v1/sensor")
    for ctype in TYPES:
        for v in (1, 2, 3):
            payload = root / "build" / f"{ctype}-v{v}.img"
            payload.parent.mkdir(exist_ok=True)
            (root / "artifacts").mkdir(exist_ok=True)
            payload.write_text(f"{ctype} v{v}\n")
            write_artifact(
                root / "artifacts" / f"{ctype}-v{v}.mender",
                kind="module-image",
                name=f"{ctype}-v{v}",
                device_types=[ctype],
                payload_type=ctype,
                files=[payload],
            )
    return root


@dataclass(frozen=True)
class Scenario:
    devices: list[tuple[str, str, str]]  # (device id, component type, version it runs)
    targets: dict[str, tuple[str, int]]  # component type -> (artifact name, order)
    forbidden: list[dict[str, str]]  # transition rows with acceptable: false
    no_rollback: list[str]  # devices answering SupportsRollback: No
    failure: tuple[str, str] | None  # (device, state) that exits 1


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True))
    devices = []
    for i in range(draw(st.integers(len(types), 4))):
        ctype = types[i % len(types)]
        devices.append((f"{ctype[0].upper()}{i}", ctype, f"{ctype}-v{draw(st.integers(1, 2))}"))
    targets = {t: (f"{t}-v{draw(st.integers(2, 3))}", draw(st.sampled_from([10, 20, 30]))) for t in types}
    glob = st.sampled_from(["-v1", "-v2", "-v3", "-v[12]", "-v[23]"])
    forbidden = [
        {t: t + draw(glob) for t in draw(st.lists(st.sampled_from(types), min_size=1, unique=True))}
        for _ in range(draw(st.integers(1, 3)))
    ]
    no_rollback = draw(st.lists(st.sampled_from([d[0] for d in devices]), unique=True))
    failing = st.tuples(st.sampled_from([d[0] for d in devices]), st.sampled_from(FAILING))
    failure = draw(st.none() if draw(st.integers(0, 3)) == 0 else failing)
    return Scenario(devices, targets, forbidden, no_rollback, failure)


def build(template: Path, root: Path, scenario: Scenario) -> DesiredState:
    shutil.copytree(template / "share", root / "share", symlinks=True)
    (root / "timeline.log").touch()
    components = []
    for device, ctype, version in scenario.devices:
        directory = root / "devices" / device
        (directory / "answers").mkdir(parents=True)
        (directory / "component-type").write_text(f"{ctype}\n")
        (directory / "version").write_text(f"{version}\n")
        if device in scenario.no_rollback:
            (directory / "answers" / "SupportsRollback").write_text("No\n")
        components.append(Component(ctype, ctype, (device,), None))
    targets = {
        t: TypeTarget(t, None, template / "artifacts" / f"{name}.mender", order)
        for t, (name, order) in scenario.targets.items()
    }
    manifest = Manifest("current", "random", ("system-core",), targets, root / "manifest.yaml", b"")
    return DesiredState(manifest, Topology("system-core", tuple(components), "random"))


def constraints_for(scenario: Scenario, end: Sequence[tuple[str, str]]) -> Constraints:
    forbidden = tuple(
        Row(
            "transition_states",
            i,
            i + 1,
            tuple(Pattern(t, g, i + 1) for t, g in row.items()),
            acceptable=False,
        )
        for i, row in enumerate(scenario.forbidden)
    )
    # One end state: exactly where the manifest leads, so the end check alone refuses nothing.
    exact = tuple(Pattern(t, v, 1) for t, v in dict(end).items())
    return Constraints("random.yaml", (Row("end_states", 0, 1, exact, system_version="end"),), forbidden)


def replay(root: Path, start: dict[str, str]) -> Iterator[dict[str, str]]:
    """Every state the interfaces recorded, in the order they wrote it."""
    running = dict(start)
    for line in (root / "timeline.log").read_text().splitlines():
        _, device, _old, _arrow, new = line.split()
        running[device] = new
        yield dict(running)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(scenario=scenarios())
def test_every_state_of_an_accepted_run_is_allowed(template: Path, scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory(prefix="orch-prop-") as tmp:
        root = Path(tmp)
        desired = build(template, root, scenario)
        runner = InterfaceRunner(data_dir=root / "share", timeout=30)
        inspected = Inspector(runner=runner, journal=QuietJournal(), workdir=root / "inspect").inspect(
            desired.topology.components
        )
        plan = select(desired, inspected)
        end = [(t.component.component_type, t.target_version) for t in plan.targets]
        constraints = constraints_for(scenario, end)
        verdict = check_plan(plan, constraints, rollback_support(runner, plan.installing(), root / "preview"))
        event("accepted" if verdict.ok else "refused")
        if not verdict.ok:
            return
        if scenario.failure:
            device, failing = scenario.failure
            (root / "devices" / device / f"{failing}.FAIL").touch()
        options = Options(work_root=root / "work", reboot_command=("true",), reboot_wait_seconds=0)
        result = Machine(plan=plan, runner=runner, journal=QuietJournal(), options=options).run()
        event(f"{result.outcome} (failure: {scenario.failure})")
        start = {d: v for d, _, v in scenario.devices}
        types = {d: t for d, t, _ in scenario.devices}
        for state in replay(root, start):
            if state == start:
                continue  # where the system began: exempt, as in the checker
            row = constraints.forbidding([(types[d], v) for d, v in state.items()])
            assert row is None, f"{result.outcome}: the run passed through {state}, forbidden by {row}"
