"""Crash safety, proven by killing the real CLI (SIGKILL) while a chosen interface call runs.

Every case: a fresh demo system; the chosen state (or query) SLEEPs on the chosen device; we start
`install` as a subprocess, wait for the device's `<State>.STARTED` marker, SIGKILL the
orchestrator process only, then run `resume` and check the result.

The interface call that was running lives in its own session, so SIGKILL of the orchestrator
leaves it running as an orphan. Decision (docs/reliability.md): `resume` terminates such leftover
calls (SIGTERM to their process group, SIGKILL after a grace period) before it continues, exactly
as a power cut would have ended them, so a leftover never runs concurrently with the resumed
flow. Its state is recorded as interrupted and never counted as succeeded.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import CLI, DemoSystem

V1 = {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}
KEYS = {"G13": "gateway.G13", "R456": "rtos.R456", "R998": "rtos.R998"}
SLEEP = "2"
POLL = 0.02

# ----- helpers shared by the test_crash_* modules ------------------------------------------------


def start(demo: DemoSystem, *args: str) -> subprocess.Popen[str]:
    """The CLI as a child process; output goes to a file so a full pipe never blocks it."""
    log = open(demo.root / f"cli-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed by the child's exit
    return subprocess.Popen([CLI, *args], env=demo.env, stdout=log, stderr=subprocess.STDOUT, text=True)


def start_install(demo: DemoSystem, manifest: str = "manifest-v2.yaml", *args: str) -> subprocess.Popen[str]:
    return start(demo, "install", str(demo.system / manifest), *args)


def sleep_in(demo: DemoSystem, device: str, state: str, seconds: str = SLEEP) -> None:
    (demo.device(device) / f"{state}.SLEEP").write_text(seconds)
    (demo.device(device) / f"{state}.STARTED").unlink(missing_ok=True)


def wait_started(demo: DemoSystem, proc: subprocess.Popen[str], device: str, state: str) -> None:
    marker = demo.device(device) / f"{state}.STARTED"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, f"the CLI ended (exit {proc.returncode}) before {device} {state} started"
        assert time.monotonic() < deadline, f"{device} {state} never started"
        time.sleep(POLL)


def kill_during(demo: DemoSystem, proc: subprocess.Popen[str], device: str, state: str) -> None:
    """SIGKILL the orchestrator (only it) while `state` runs on `device`, then let the next call
    of that state run at full speed."""
    wait_started(demo, proc, device, state)
    proc.kill()
    proc.wait()
    (demo.device(device) / f"{state}.SLEEP").unlink(missing_ok=True)


IN_PROGRESS = ("queued", "running", "stopped", "reboot_required")


def history(demo: DemoSystem) -> list[dict[str, Any]]:
    """Every deployment, newest first (one CLI run: start-up is most of a case's cost)."""
    records: list[dict[str, Any]] = json.loads(demo.run("history", "--json").stdout)
    return records


def last_deployment(demo: DemoSystem) -> dict[str, Any]:
    return history(demo)[0]


def device_of(component: str) -> str | None:
    """`rtos.R456` and, before Identity answered, `rtos[R456]` -> R456; `host` -> None."""
    for device in V1:
        if component.endswith(f".{device}") or component.endswith(f"[{device}]"):
            return device
    return None


def history_matches_calls(demo: DemoSystem, records: list[dict[str, Any]]) -> None:
    """Every interface call that ran has a step row, per device in the same order.

    The row is written before the call starts, so a kill can land between the two: such a row
    has no call in calls.log, and it must say it was interrupted (never "ok")."""
    steps = [s for d in reversed(records) for s in d["steps"]]
    for device in V1:
        recorded = [s for s in steps if device_of(s["component"]) == device]
        ran = [s for _, d, s, edge in demo.calls() if d == device and edge == "start"]
        unmatched = []
        for step in recorded:
            if ran[:1] == [step["state"]]:
                ran.pop(0)
            else:
                unmatched.append(step)
        names = [s["state"] for s in recorded]
        assert not ran, f"{device}: calls {ran} are missing from the history {names}"
        assert all("interrupted" in s["error"] for s in unmatched), f"{device}: {unmatched} never ran"


def _interrupted_recorded(record: dict[str, Any], device: str, state: str) -> None:
    """The call that was running when the process died is recorded as interrupted, not ok."""
    killed = [s for s in record["steps"] if device_of(s["component"]) == device and s["state"] == state]
    assert any("interrupted" in s["error"] for s in killed), f"{device} {state}: {killed}"
    assert all(s["ended_at"] for s in record["steps"]), "a step row was left open"


@dataclass(frozen=True)
class Expected:
    status: str
    versions: dict[str, str]
    stuck: str | None = None  # the component that cannot go back (inconsistent)


def _outcome(demo: DemoSystem, record: dict[str, Any], expected: Expected) -> None:
    assert record["status"] == expected.status, record["reason"]
    versions = demo.versions()
    if expected.stuck:
        assert record["components"] == [KEYS[expected.stuck]], record
        versions.pop(expected.stuck)
    assert versions == {d: v for d, v in expected.versions.items() if d != expected.stuck}


INSPECTION = ("Identity", "Provides", "Inventory")


def calls_logged(demo: DemoSystem) -> list[tuple[str, str, str]]:
    """(device, state, "start" | "end <exit code>") for every line of calls.log, in order."""
    path = demo.root / "calls.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(dev, state, " ".join(edge)) for _, dev, state, *edge in (line.split() for line in lines)]


def started_since(demo: DemoSystem, mark: int) -> dict[str, list[str]]:
    """Per device, the states and queries started after the first `mark` lines of calls.log
    (a leftover call of the killed run may still log its end there, never a new start), less
    the inspection queries (Identity, Provides, Inventory: the refresh after the run asks them)."""
    started: dict[str, list[str]] = {d: [] for d in V1}
    for device, state, edge in calls_logged(demo)[mark:]:
        if edge == "start" and state not in INSPECTION:
            started[device].append(state)
    return started


FLOW_STATES = ("NeedsUnpackedArtifact", "ProvidePayloadFileSizes", "Download", "DownloadWithFileSizes")


def every_entered_component_cleaned_up(demo: DemoSystem) -> None:
    """A component that entered the flow (its work tree was prepared: any call from
    NeedsUnpackedArtifact on) ends with a Cleanup that succeeded, and nothing after it."""
    calls = calls_logged(demo)
    for device in V1:
        # Identity, Provides and Inventory (the inspection before and the refresh after) aside.
        mine = [(state, edge) for d, state, edge in calls if d == device and state not in INSPECTION]
        entered = any(state in FLOW_STATES for state, _ in mine)
        if not entered:
            continue
        starts = [i for i, (_, edge) in enumerate(mine) if edge == "start"]
        last = starts[-1]
        assert mine[last][0] == "Cleanup", f"{device}: the last call is {mine[last][0]}, not Cleanup"
        assert ("Cleanup", "end 0") in mine[last:], (
            f"{device}: the last Cleanup did not succeed: {mine[last:]}"
        )


def verify(demo: DemoSystem, expected: Expected, *, interrupted: tuple[str, str] | None = None) -> None:
    """Final versions and outcome, nothing left in progress, the history complete and in order,
    Cleanup for every component that entered the flow."""
    records = history(demo)
    _outcome(demo, records[0], expected)
    if interrupted:
        _interrupted_recorded(records[0], *interrupted)
    history_matches_calls(demo, records)
    every_entered_component_cleaned_up(demo)


def assert_nothing_in_progress(demo: DemoSystem) -> None:
    assert last_deployment(demo)["status"] not in IN_PROGRESS


# ----- the matrix --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    flow: str  # "install": the install flow is killed; "rollback": R456's commit fails first
    device: str
    state: str
    rollback: str  # the killed device's SupportsRollback answer

    @property
    def id(self) -> str:
        return f"{self.flow}-{self.device}-{self.state}-rollback{self.rollback}"


BEFORE_PLAN = ("Identity", "Provides")  # inspection: nothing is touched yet
DOWNLOAD = ("NeedsUnpackedArtifact", "ProvidePayloadFileSizes", "Download")  # no install started
INSTALLED = (
    "ArtifactInstall",
    "NeedsArtifactReboot",
    "ArtifactReboot",
    "ArtifactVerifyReboot",
    "ArtifactCommit",
)
INSTALL_FLOW = (*BEFORE_PLAN, *DOWNLOAD, *INSTALLED, "Cleanup")
ROLLBACK_FLOW = (
    "SupportsRollback",
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "ArtifactVerifyRollbackReboot",
    "ArtifactFailure",
    "Cleanup",
)
REBOOT_STATES = (
    "ArtifactReboot",
    "ArtifactVerifyReboot",
    "ArtifactRollbackReboot",
    "ArtifactVerifyRollbackReboot",
)
ROLLBACK_STATES = ("ArtifactRollback", "ArtifactRollbackReboot", "ArtifactVerifyRollbackReboot")


def _possible(case: Case) -> bool:
    # R456 answers NeedsArtifactReboot No: its reboot states are never called.
    if case.device == "R456" and case.state in REBOOT_STATES:
        return False
    # SupportsRollback No: the rollback states are never called for that device.
    return not (case.rollback == "No" and case.state in ROLLBACK_STATES)


def _answer_matters(case: Case) -> bool:
    """Whether the killed device's SupportsRollback answer can change the run: it is asked only
    of components whose ArtifactInstall started (the rollback path). Killed before that, or in
    the final Cleanup, "No" would run exactly the "Yes" case again (checked in the test: the
    device is never asked), so only one of the two runs."""
    never_asked = case.flow == "install" and case.state in (*BEFORE_PLAN, *DOWNLOAD, "Cleanup")
    return case.rollback == "Yes" or not never_asked


def matrix() -> list[Case]:
    # SupportsRollback is not in the install flow: it is only asked on the rollback path
    # (reference checklist 51), so it is covered by the rollback flow below.
    cases = [
        Case(flow, device, state, answer)
        for flow, states in (("install", INSTALL_FLOW), ("rollback", ROLLBACK_FLOW))
        for device in ("G13", "R456")
        for state in states
        for answer in ("Yes", "No")
    ]
    return [c for c in cases if _possible(c) and _answer_matters(c)]


def expected(case: Case) -> Expected:
    if case.flow == "install" and case.state == "Cleanup":
        return Expected("succeeded", V2)  # commit is final: resume finishes Cleanup
    if case.flow == "install" and case.state in BEFORE_PLAN + DOWNLOAD:
        return Expected("rolled_back", V1)  # the killed device never started installing
    if case.rollback == "No":
        return Expected("inconsistent", V1, stuck=case.device)
    return Expected("rolled_back", V1)


def rollback_path(device: str, answer: str, *, reboot_known: bool = True) -> list[str]:
    """What the rollback path calls on one component whose ArtifactInstall started. G13 answers
    NeedsArtifactReboot Yes: its rollback reboots too, if that answer was received (a kill in
    ArtifactInstall or NeedsArtifactReboot loses it); R456 never reboots."""
    reboots = (
        ["ArtifactRollbackReboot", "ArtifactVerifyRollbackReboot"] if device == "G13" and reboot_known else []
    )
    rollback = ["ArtifactRollback", *reboots] if answer == "Yes" else []
    return ["SupportsRollback", *rollback, "ArtifactFailure", "Cleanup"]


def resumed_calls(case: Case) -> dict[str, list[str]]:
    """What `resume` calls on G13 (group 1) and R456 (group 2), per docs/reliability.md's rows.

    R998 runs beside R456: whether its own call had finished at the kill is a race, so it is
    left to `every_entered_component_cleaned_up`."""
    other = "R456" if case.device == "G13" else "G13"
    mine, theirs = case.rollback, "Yes"
    if case.state in BEFORE_PLAN:  # nothing was touched: not one call on resume
        return {case.device: [], other: []}
    if case.flow == "rollback":  # R456's commit failed, G13 had committed: the rollback path
        path = rollback_path(case.device, mine)
        if case.device == "G13":  # group 2 had finished its rollback: it only gets Cleanup
            return {"G13": path[path.index(case.state) :], "R456": ["Cleanup"]}
        g13 = [] if case.state == "Cleanup" else rollback_path("G13", theirs)  # G13 cleaned first
        return {"R456": path[path.index(case.state) :], "G13": g13}
    if case.state == "Cleanup":  # finish Cleanup: the lower group had finished its own
        return {case.device: ["Cleanup"], other: ["Cleanup"] if case.device == "G13" else []}
    if case.state in DOWNLOAD:  # never started installing: only Cleanup; G13 below rolls back
        return {case.device: ["Cleanup"], other: [] if case.device == "G13" else rollback_path("G13", theirs)}
    # INSTALLED: the rollback path, from SupportsRollback on, for every component that started
    # installing (the lower group's, and R456's once G13 is killed in the commit loop).
    known = case.state not in ("ArtifactInstall", "NeedsArtifactReboot")
    killed = rollback_path(case.device, mine, reboot_known=known)
    if case.device == "R456":
        return {"R456": killed, "G13": rollback_path("G13", theirs)}
    return {"G13": killed, "R456": rollback_path("R456", theirs) if case.state == "ArtifactCommit" else []}


def prepare(demo: DemoSystem, case: Case) -> None:
    demo.answer(case.device, "SupportsRollback", case.rollback)
    if case.flow == "rollback":
        demo.fail("R456", "ArtifactCommit")
    sleep_in(demo, case.device, case.state)


@pytest.mark.parametrize("case", matrix(), ids=lambda c: c.id)
def test_it_recovers_from_a_kill_in_every_state(demo: DemoSystem, case: Case) -> None:
    prepare(demo, case)
    kill_during(demo, start_install(demo), case.device, case.state)
    mark = len(calls_logged(demo))
    resumed = demo.run("resume")
    assert resumed.returncode == (0 if expected(case).status == "succeeded" else 1), resumed.stdout
    verify(demo, expected(case), interrupted=(case.device, case.state))
    # Which state `resume` re-ran, and what it called after it: the row of docs/reliability.md.
    started = started_since(demo, mark)
    assert {d: started[d] for d in resumed_calls(case)} == resumed_calls(case)
    if case.state in BEFORE_PLAN:
        assert started["R998"] == []
    if not _answer_matters(Case(case.flow, case.device, case.state, "No")):
        asked = [s for _, d, s, edge in demo.calls() if d == case.device and edge == "start"]
        assert "SupportsRollback" not in asked, asked  # so its "No" twin would prove nothing new


# ----- killed twice: once in the install, once more while `resume` rolls back --------------------

SECOND_KILLS = [
    (device, state)
    for device in ("R456", "G13")
    for state in ROLLBACK_FLOW
    if _possible(Case("rollback", device, state, "Yes"))
]


@pytest.mark.parametrize(("device", "state"), SECOND_KILLS, ids=lambda v: str(v))
def test_it_recovers_when_resume_is_killed_during_the_rollback_too(
    demo: DemoSystem, device: str, state: str
) -> None:
    sleep_in(demo, "R456", "ArtifactInstall")
    kill_during(demo, start_install(demo), "R456", "ArtifactInstall")
    sleep_in(demo, device, state)
    kill_during(demo, start(demo, "resume"), device, state)
    assert demo.run("resume").returncode == 1
    verify(demo, Expected("rolled_back", V1), interrupted=(device, state))


# ----- the leftover interface call finished on its own before `resume` ---------------------------


ORPHAN_DONE: dict[tuple[str, str], Callable[[Path], bool]] = {
    ("G13", "ArtifactInstall"): lambda dev: (dev / "pending").exists(),
    ("G13", "ArtifactReboot"): lambda dev: (dev / "version").read_text().strip() == "gateway-v2",
    ("R456", "ArtifactCommit"): lambda dev: not (dev / "pending").exists(),
}


@pytest.mark.parametrize(("device", "state"), list(ORPHAN_DONE), ids=lambda v: str(v))
def test_a_state_that_finished_after_the_kill_is_still_not_counted_as_done(
    demo: DemoSystem, device: str, state: str
) -> None:
    sleep_in(demo, device, state, "0.3")
    kill_during(demo, start_install(demo), device, state)
    # The orphan does the state's work (it dies of SIGPIPE at its first output line: nobody
    # reads its pipes any more, which is one more reason never to count on it).
    deadline = time.monotonic() + 30
    while not ORPHAN_DONE[(device, state)](demo.device(device)):
        assert time.monotonic() < deadline, f"{device} {state} never took effect"
        time.sleep(POLL)
    assert demo.run("resume").returncode == 1
    verify(demo, Expected("rolled_back", V1), interrupted=(device, state))


def _processes_running(demo: DemoSystem, state: str) -> list[Path]:
    """/proc entries of live interface processes of this demo running `state`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            alive = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            continue
        if alive and state.encode() in argv and any(str(demo.root).encode() in a for a in argv):
            found.append(entry)
    return found


def test_resume_stops_a_leftover_interface_call_before_it_continues(demo: DemoSystem) -> None:
    sleep_in(demo, "G13", "ArtifactInstall", "30")
    kill_during(demo, start_install(demo), "G13", "ArtifactInstall")
    assert _processes_running(demo, "ArtifactInstall")  # the orphan still sleeps its 30 s
    began = time.monotonic()
    assert demo.run("resume").returncode == 1
    assert time.monotonic() - began < 20  # it did not wait for the orphan
    assert not _processes_running(demo, "ArtifactInstall")  # nor let it run on
    verify(demo, Expected("rolled_back", V1))


def test_the_matrix_covers_every_state_and_query() -> None:
    covered = {c.state for c in matrix()}
    assert covered == set(INSTALL_FLOW) | set(ROLLBACK_FLOW)
    # 56 combinations, less the 12 "No" twins whose answer is never asked (_answer_matters).
    assert len(matrix()) == 44
