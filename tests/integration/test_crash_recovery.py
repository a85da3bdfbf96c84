"""Crash safety beyond the kill matrix: host reboots, loop protection, database durability after
kills, and two orchestrators racing for the same work."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import POSTGRES_URL, DemoSystem
from tests.integration.test_crash_matrix import (
    V1,
    V2,
    Expected,
    assert_nothing_in_progress,
    every_entered_component_cleaned_up,
    history,
    history_matches_calls,
    kill_during,
    last_deployment,
    sleep_in,
    start,
    start_install,
    verify,
)

ROLLBACK_WITH_HOST_REBOOT = ["ArtifactRollback", "ArtifactVerifyRollbackReboot", "ArtifactFailure", "Cleanup"]


def _reboot_script(demo: DemoSystem, body: str = "") -> None:
    """ORCH_REBOOT_COMMAND: a script that records each call (and may do more, like dying)."""
    script = demo.root / "reboot.sh"
    script.write_text(f"#!/bin/sh\necho rebooted >>{demo.root / 'reboots.log'}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    demo.env["ORCH_REBOOT_COMMAND"] = str(script)


def _reboots(demo: DemoSystem) -> int:
    log = demo.root / "reboots.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# ----- host reboots ----------------------------------------------------------------------------


def test_it_exits_4_on_an_automatic_reboot_and_resume_verifies_it(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    assert demo.install("manifest-v2.yaml", "--exit-on-reboot").returncode == 4
    assert last_deployment(demo)["status"] == "reboot_required"
    assert demo.run("resume").returncode == 0
    assert demo.states("G13") == [
        "Download",
        "ArtifactInstall",
        "ArtifactVerifyReboot",
        "ArtifactCommit",
        "Cleanup",
    ]
    verify(demo, Expected("succeeded", V2))


def test_an_interface_reboot_answer_yes_needs_no_host_reboot(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml", "--exit-on-reboot").returncode == 0
    assert "ArtifactReboot" in demo.states("G13")
    assert not (demo.root / "host-rebooted").exists()
    verify(demo, Expected("succeeded", V2))


def test_it_exits_4_again_for_the_rollback_reboot(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    demo.fail("R456", "ArtifactCommit")
    assert demo.install("manifest-v2.yaml", "--exit-on-reboot").returncode == 4
    assert demo.run("resume", "--exit-on-reboot").returncode == 4  # the rollback reboot
    assert demo.states("G13")[-1] == "ArtifactRollback"
    assert demo.run("resume").returncode == 1
    assert demo.states("G13")[-len(ROLLBACK_WITH_HOST_REBOOT) :] == ROLLBACK_WITH_HOST_REBOOT
    verify(demo, Expected("rolled_back", V1))


def test_it_runs_the_reboot_command_for_automatic_reboots(demo: DemoSystem) -> None:
    _reboot_script(demo)
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    assert demo.install("manifest-v2.yaml").returncode == 0
    assert _reboots(demo) == 1
    demo.fail("R456", "ArtifactCommit")
    (demo.root / "reboots.log").unlink()
    assert demo.install("manifest-v3.yaml").returncode == 1
    assert _reboots(demo) == 2  # the update's and the rollback's
    verify(demo, Expected("rolled_back", V2))


def test_a_host_reboot_that_ends_the_process_resumes_at_verify_reboot(demo: DemoSystem) -> None:
    # A real reboot kills us while (or after) the command runs: the position was persisted
    # first, so `resume` after the boot continues at ArtifactVerifyReboot, it is not a crash.
    _reboot_script(demo, 'kill -9 "$PPID"')
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    proc = start_install(demo)
    assert proc.wait(60) == -9
    assert _reboots(demo) == 1
    _reboot_script(demo)
    assert demo.run("resume").returncode == 0
    assert _reboots(demo) == 1  # not rebooted again
    assert demo.states("G13") == [
        "Download",
        "ArtifactInstall",
        "ArtifactVerifyReboot",
        "ArtifactCommit",
        "Cleanup",
    ]
    verify(demo, Expected("succeeded", V2))


def test_a_rollback_reboot_that_ends_the_process_resumes_at_verify_rollback_reboot(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    demo.fail("R456", "ArtifactCommit")
    assert demo.install("manifest-v2.yaml", "--exit-on-reboot").returncode == 4
    _reboot_script(demo, 'kill -9 "$PPID"')
    assert start(demo, "resume").wait(60) == -9
    _reboot_script(demo)
    assert demo.run("resume").returncode == 1
    assert demo.states("G13")[-len(ROLLBACK_WITH_HOST_REBOOT) :] == ROLLBACK_WITH_HOST_REBOOT
    assert demo.states("G13").count("ArtifactRollback") == 1
    verify(demo, Expected("rolled_back", V1))


# ----- loop protection -------------------------------------------------------------------------


def test_it_gives_up_on_a_deployment_that_keeps_dying_in_the_same_state(demo: DemoSystem) -> None:
    sleep_in(demo, "G13", "ArtifactInstall", "1")
    kill_during(demo, start_install(demo), "G13", "ArtifactInstall")
    for _ in range(4):  # the rollback dies in the same place every time
        sleep_in(demo, "G13", "ArtifactRollback", "1")
        kill_during(demo, start(demo, "resume"), "G13", "ArtifactRollback")
    result = demo.run("resume")
    assert result.returncode == 1
    record = last_deployment(demo)
    assert record["status"] == "inconsistent"
    assert "died 4 times" in record["reason"] and "ArtifactRollback" in record["reason"]
    assert record["components"] == ["gateway.G13"]
    assert demo.states("G13").count("ArtifactRollback") == 4
    assert_nothing_in_progress(demo)
    assert demo.run("resume").returncode == 2


# ----- database durability -----------------------------------------------------------------------


def _integrity(demo: DemoSystem) -> list[str]:
    """SQLite: its own checks of the file (pages, indexes, foreign keys). PostgreSQL keeps its
    pages itself (and enforces foreign keys at commit); there: the audit journal's hash chain,
    every entry in order with no gap up to the head (`audit verify`), the one check that reads
    what our own transactions wrote."""
    if POSTGRES_URL:
        verified = demo.run("audit", "verify")
        return ["ok"] if verified.returncode == 0 else [verified.stdout + verified.stderr]
    with sqlite3.connect(demo.datastore / "orchestrator.sqlite3") as db:
        rows = (
            db.execute("PRAGMA integrity_check").fetchall()
            + db.execute("PRAGMA foreign_key_check").fetchall()
        )
    return [str(r[0]) for r in rows]


def _in_progress(demo: DemoSystem) -> bool:
    """Whether a deployment holds the in-progress slot. Read from the file in this process (as
    `_integrity` does): a CLI `status` here proved nothing new and cost a start-up per read."""
    if POSTGRES_URL:
        return bool(json.loads(demo.run("status", "--json").stdout)["in_progress"])
    with sqlite3.connect(demo.datastore / "orchestrator.sqlite3") as db:
        return bool(db.execute("SELECT count(*) FROM updates_deployment WHERE slot = 1").fetchone()[0])


def _wait_for_a_call(demo: DemoSystem, proc: subprocess.Popen[str]) -> None:
    """Until the process starts one more interface call (or ends, or 30 s pass)."""
    log = demo.root / "calls.log"
    seen = len(log.read_text().splitlines()) if log.exists() else 0
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) > seen:
            return
        time.sleep(0.02)


def test_the_database_stays_consistent_when_killed_during_writes(demo: DemoSystem) -> None:
    rng = random.Random(4)  # fixed: the same kill times on every run
    finished = 0
    for _ in range(12):
        busy = _in_progress(demo)
        proc = (
            start(demo, "resume")
            if busy
            else start_install(demo, "manifest-v3.yaml" if finished else "manifest-v2.yaml")
        )
        _wait_for_a_call(demo, proc)  # past start-up (seconds on a loaded machine), into the run
        time.sleep(rng.uniform(0.0, 1.4))  # ... and somewhere in its writes
        proc.kill()
        proc.wait()
        assert _integrity(demo) == ["ok"]
        finished += int(not _in_progress(demo))
    if _in_progress(demo):
        assert demo.run("resume").returncode in (0, 1)
    assert _integrity(demo) == ["ok"]
    verified = demo.run("audit", "verify")  # the journal's chain survived every kill, both databases
    assert verified.returncode == 0, verified.stdout + verified.stderr
    records = history(demo)
    record = records[0]
    assert record["status"] in ("succeeded", "rolled_back", "inconsistent"), record
    assert_nothing_in_progress(demo)
    # Every interface call of every run has its step row, per device in the same order; a row
    # whose call never started (the kill fell between the two) says it was interrupted.
    history_matches_calls(demo, records)
    if record["status"] != "inconsistent":
        assert len({v.rsplit("v", 1)[1] for v in demo.versions().values()}) == 1, demo.versions()
        every_entered_component_cleaned_up(demo)
        return
    # Inconsistent: it gave up after repeated kills in one place (or a rollback failed). Which
    # version each device then runs depends on where the kills fell: the record must name the
    # components it could not bring back and say why.
    assert record["components"], record
    assert "died 4 times" in record["reason"] or "could not roll back" in record["reason"], record


# ----- two orchestrators at the same moment ------------------------------------------------------


def test_two_installs_at_the_same_moment_run_once(demo: DemoSystem) -> None:
    sleep_in(demo, "G13", "Download", "1")  # the winner is still running when the loser decides
    procs = [start_install(demo), start_install(demo)]
    assert sorted(p.wait(60) for p in procs) == [0, 3]
    refusal = next(t for f in demo.root.glob("cli-*.log") if "deployment 1 (" in (t := f.read_text()))
    # Its runner is alive: say so and to wait; `resume`/`rollback` would be wrong advice.
    assert re.search(r"deployment 1 \(system-core-v2\) is (running \(pid \d+, since|queued since)", refusal)
    assert "wait for it to" in refusal and "`rollback`" not in refusal, refusal
    assert len(json.loads(demo.run("history", "--json").stdout)) == 1
    assert demo.states("G13") == [
        "Download",
        "ArtifactInstall",
        "ArtifactReboot",
        "ArtifactVerifyReboot",
        "ArtifactCommit",
        "Cleanup",
    ]
    verify(demo, Expected("succeeded", V2))


def test_two_resumes_at_the_same_moment_after_a_crash_continue_once(demo: DemoSystem) -> None:
    sleep_in(demo, "G13", "ArtifactInstall", "1")
    kill_during(demo, start_install(demo), "G13", "ArtifactInstall")
    sleep_in(demo, "G13", "ArtifactRollback", "1")
    procs = [start(demo, "resume"), start(demo, "resume")]
    assert sorted(p.wait(60) for p in procs) == [1, 3]
    assert demo.states("G13").count("ArtifactRollback") == 1
    verify(demo, Expected("rolled_back", V1))


def test_rollback_is_refused_once_cleanup_started_and_resume_finishes(demo: DemoSystem) -> None:
    sleep_in(demo, "G13", "Cleanup", "1")
    kill_during(demo, start_install(demo), "G13", "Cleanup")
    result = demo.run("rollback")
    assert result.returncode == 2 and "can no longer be rolled back" in result.stderr
    assert demo.run("resume").returncode == 0
    verify(demo, Expected("succeeded", V2))


def test_a_zombie_owner_counts_as_dead() -> None:
    from updates.liveness import owner_alive

    child = subprocess.Popen(["/bin/sh", "-c", "exit 0"])
    token_pid = child.pid
    deadline = time.monotonic() + 5
    # While unreaped, the exited child is a zombie; the token must already read as dead.
    while Path(f"/proc/{token_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    start = Path(f"/proc/{token_pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert not owner_alive(f"{boot}:{token_pid}:{start}")
    child.wait()


def test_an_unexpected_error_leaves_the_deployment_to_recovery(demo: DemoSystem) -> None:
    (demo.datastore / "work").write_text("a file where the work directories should go")
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 1
    with sqlite3.connect(demo.datastore / "orchestrator.sqlite3") as db:
        status, owner = db.execute("select status, owner from updates_deployment").fetchone()
    assert (status, owner) == ("running", "")
    (demo.datastore / "work").unlink()
    assert demo.run("resume").returncode == 1
    record = json.loads(demo.run("history", "--json").stdout)[0]
    assert record["status"] == "rolled_back"
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
