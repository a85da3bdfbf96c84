"""docs/policy.md on the demo system's real interfaces: approval gates decided from the command
line (and left to expire), the health window, a process killed while it waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.inprocess_cli import CLI
from tests.integration.conftest import DemoSystem

V1 = {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}


def _policy(demo: DemoSystem, text: str) -> None:
    (demo.datastore / "policy.yaml").write_text(text)


def _gate(timeout: str = "10m", on_timeout: str = "rollback") -> str:
    return f"gates:\n  - before: ArtifactCommit\n    timeout: {timeout}\n    on_timeout: {on_timeout}\n"


def _start_install(demo: DemoSystem, manifest: str = "manifest-v2.yaml") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLI, "install", str(demo.system / manifest)],
        env=demo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _status(demo: DemoSystem) -> dict[str, object]:
    result = demo.run("status", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def _wait_until_waiting(demo: DemoSystem, proc: subprocess.Popen[str] | None = None) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = _status(demo)["in_progress"]
        if isinstance(running, dict) and running["status"] == "waiting_approval":
            return running
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"install ended before the gate: {proc.communicate()}")
        time.sleep(0.2)
    pytest.fail("the deployment never waited at the gate")


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _history(demo: DemoSystem) -> dict[str, object]:
    result = demo.run("history", "--json", "--limit", "1")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows[0]


def test_a_gate_before_commit_waits_and_approve_commits(demo: DemoSystem) -> None:
    demo.install("manifest-v1.yaml")
    _policy(demo, _gate())
    proc = _start_install(demo)
    running = _wait_until_waiting(demo, proc)
    gate = running["gate"]
    assert isinstance(gate, dict) and gate["before"] == "ArtifactCommit" and gate["expires_at"]
    # Nothing committed while it waits; the new versions are installed, uncommitted.
    assert "ArtifactCommit" not in demo.states("R456")
    approved = demo.run("approve", "--reason", "checked on the bench")
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout
    code, out, _ = _finish(proc)
    assert code == 0, out
    assert "orchestrator approve" in out  # it printed how to approve
    assert demo.versions() == V2
    assert demo.run("approve").returncode == 2  # nothing waits any more
    history = _history(demo)
    assert history["status"] == "succeeded" and history["gate"] is None
    steps = history["steps"]
    assert isinstance(steps, list)
    gate_steps = [s for s in steps if s["state"] == "ApprovalGate"]
    assert len(gate_steps) == 1 and "approved by" in gate_steps[0]["answer"]
    report = demo.run("audit", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    section = json.loads(report.stdout)["deployments"][-1]
    kinds = [(r["kind"], r["data"].get("reason")) for r in section["requests"]]
    assert ("waiting", None) in kinds and ("approved", "checked on the bench") in kinds


def test_reject_rolls_the_system_back(demo: DemoSystem) -> None:
    demo.install("manifest-v1.yaml")
    _policy(demo, _gate())
    proc = _start_install(demo)
    _wait_until_waiting(demo, proc)
    rejected = demo.run("reject", "--reason", "the line is running")
    assert rejected.returncode == 0, rejected.stderr
    code, out, _ = _finish(proc)
    assert code == 1, out
    assert demo.versions() == V1
    history = _history(demo)
    assert history["status"] == "rolled_back"
    assert "rejected" in str(history["reason"]) and "the line is running" in str(history["reason"])


@pytest.mark.parametrize(("on_timeout", "code", "versions"), [("rollback", 1, V1), ("proceed", 0, V2)])
def test_an_expired_gate_does_what_on_timeout_says(
    demo: DemoSystem, on_timeout: str, code: int, versions: dict[str, str]
) -> None:
    demo.install("manifest-v1.yaml")
    _policy(demo, _gate("1s", on_timeout))
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == code, result.stdout + result.stderr
    assert demo.versions() == versions
    if on_timeout == "rollback":
        assert "expired" in str(_history(demo)["reason"])


@pytest.mark.cli_subprocess
def test_a_killed_process_waits_again_with_the_same_expiry(demo: DemoSystem) -> None:
    demo.install("manifest-v1.yaml")
    _policy(demo, _gate())
    proc = _start_install(demo)
    before = _wait_until_waiting(demo, proc)["gate"]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.Popen(
        [CLI, "resume"], env=demo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1)  # the resume claims it, then waits at the gate again
    after = _wait_until_waiting(demo, resumed)["gate"]
    assert isinstance(after, dict) and isinstance(before, dict)
    assert after["expires_at"] == before["expires_at"]
    assert demo.run("approve").returncode == 0
    code, out, _ = _finish(resumed)
    assert code == 0, out
    assert demo.versions() == V2


def _health_check(demo: DemoSystem, name: str, fail_on_run: int) -> None:
    """A check that passes until its `fail_on_run`-th run (0: never fails), counting in a file."""
    folder = demo.root / "share" / "health-checks"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    count = demo.root / f"{name}.count"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo "$n" > {count}\n'
        f'echo "bus $1: run $n"\n'
        f'if [ "$n" -eq {fail_on_run} ]; then echo "no answer from board on $1" >&2; exit 3; fi\n'
    )
    script.chmod(0o755)


HEALTH = "health:\n  window: 2s\n  interval: 1s\n  checks:\n    - name: can-bus\n      command: can-bus-check\n      args: [can0]\n      timeout: 5s\n"


def test_a_health_check_failing_on_its_third_run_rolls_back(demo: DemoSystem) -> None:
    demo.install("manifest-v1.yaml")
    _health_check(demo, "can-bus-check", fail_on_run=3)
    _policy(demo, HEALTH)
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert demo.versions() == V1
    history = _history(demo)
    reason = str(history["reason"])
    assert "health check can-bus failed on run 3" in reason and "no answer from board on can0" in reason
    steps = history["steps"]
    assert isinstance(steps, list)
    checks = [s for s in steps if s["state"] == "HealthCheck"]
    assert [c["exit_code"] for c in checks] == [0, 0, 3]
    assert checks[0]["argv"][1:] == ["can0"]
    assert "ArtifactCommit" not in demo.states("R456")


def test_a_passing_health_window_commits(demo: DemoSystem) -> None:
    demo.install("manifest-v1.yaml")
    _health_check(demo, "can-bus-check", fail_on_run=0)
    _policy(demo, HEALTH)
    started = time.monotonic()
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started >= 2  # the whole window ran
    assert demo.versions() == V2
    assert (demo.root / "can-bus-check.count").read_text().strip() == "3"


def test_a_policy_with_problems_is_refused_naming_them(demo: DemoSystem) -> None:
    _policy(demo, "gates:\n  - before: Commit\n    timeout: 30\n")
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 2
    policy = str(Path(demo.datastore / "policy.yaml"))
    assert (
        f"{policy}:2: gates[0].before: must be one of Download, ArtifactReboot, ArtifactCommit"
        in result.stderr
    )
    assert f"{policy}:3: gates[0].timeout: must be a duration" in result.stderr


def test_drift_appears_when_a_board_is_changed_behind_our_back_and_reconcile_ends_it(
    demo: DemoSystem,
) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    (demo.device("R456") / "version").write_text("rtos-v1\n")  # reflashed by hand
    refreshed = demo.run("refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "rtos.R456" in refreshed.stdout and "runs rtos-v1, expected rtos-v2" in refreshed.stdout
    drift = _status(demo)["drift"]
    assert isinstance(drift, list) and [(d["component"], d["expected"], d["actual"]) for d in drift] == [
        ("rtos.R456", "rtos-v2", "rtos-v1")
    ]
    since = drift[0]["since"]
    assert demo.run("refresh").returncode == 0  # asked again: the same drift, the same start
    again = _status(demo)["drift"]
    assert isinstance(again, list) and again[0]["since"] == since
    calls_before = len(demo.calls())
    reconciled = demo.run("reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    states = [
        (d, s) for _, d, s, edge in demo.calls()[calls_before:] if edge == "start" and s == "ArtifactInstall"
    ]
    assert states == [("R456", "ArtifactInstall")]  # only the drifted board was touched
    assert demo.versions() == V2
    status = _status(demo)
    assert status["drift"] == []
    # The same manifest again does not push the one before it out of `install --previous`.
    assert status["manifests"] == {"active": "system-core-v2", "previous": None}
    kinds = [e["kind"] for e in _journal(demo) if e["subject"] == "component:rtos.R456"]
    assert kinds == ["component.drifted", "component.drift_ended"]
    report = demo.run("audit", "report", "--format", "json")
    drifts = [(d["kind"], d["component"], d["actual"]) for d in json.loads(report.stdout)["drift"]]
    assert drifts == [("drifted", "rtos.R456", "rtos-v1"), ("drift_ended", "rtos.R456", "rtos-v2")]


def _journal(demo: DemoSystem) -> list[dict[str, object]]:
    out = demo.root / "journal-export.tar"
    result = demo.run("audit", "export", "-o", str(out))
    assert result.returncode == 0, result.stderr
    with tarfile.open(out) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".jsonl"))
        data = tar.extractfile(member)
        assert data is not None
        return [json.loads(line) for line in data.read().decode().splitlines() if line.strip()]
