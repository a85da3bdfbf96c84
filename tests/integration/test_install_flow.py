"""The whole-system install/commit/rollback flow, through the real CLI and real interfaces."""

from __future__ import annotations

import json
import time

from tests.integration.conftest import DemoSystem

INSTALL = ["Download", "ArtifactInstall", "ArtifactCommit", "Cleanup"]
INSTALL_WITH_REBOOT = [
    "Download",
    "ArtifactInstall",
    "ArtifactReboot",
    "ArtifactVerifyReboot",
    "ArtifactCommit",
    "Cleanup",
]
V1 = {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}
V3 = {"G13": "gateway-v3", "R456": "rtos-v3", "R998": "rtos-v3"}


def _starts(demo: DemoSystem, device: str, state: str) -> list[float]:
    return [ts for ts, d, s, edge in demo.calls() if d == device and s == state and edge == "start"]


def _ends(demo: DemoSystem, device: str, state: str) -> list[float]:
    return [ts for ts, d, s, edge in demo.calls() if d == device and s == state and edge == "end"]


def _assert_gateway_never_behind(demo: DemoSystem) -> None:
    """The seed's transition constraint: never gateway vN while an RTOS runs vN+1."""
    running = {"G13": "gateway-v1", "R998": "rtos-v1", "R456": "rtos-v1"}
    for _, device, version in demo.timeline():
        running[device] = version
        gateway = int(running["G13"].rsplit("v", 1)[1])
        for rtos in ("R998", "R456"):
            assert int(running[rtos].rsplit("v", 1)[1]) <= gateway, f"{running} violates the constraint"


def test_it_installs_a_manifest_on_every_component(demo: DemoSystem) -> None:
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 0, result.stderr
    assert demo.versions() == V2
    assert demo.states("G13") == INSTALL_WITH_REBOOT
    assert demo.states("R998") == INSTALL
    assert demo.states("R456") == INSTALL
    assert "succeeded" in result.stdout


def test_it_prints_one_line_per_state_per_component(demo: DemoSystem) -> None:
    result = demo.install("manifest-v2.yaml")
    lines = result.stdout.splitlines()
    assert any(line.startswith("rtos.R456") and "ArtifactCommit" in line and " ok" in line for line in lines)
    assert any(
        line.startswith("gateway.G13") and "NeedsArtifactReboot" in line and "-> Yes" in line
        for line in lines
    )


def test_it_runs_order_groups_ascending_and_components_of_a_group_in_parallel(demo: DemoSystem) -> None:
    for device in ("R998", "R456"):
        (demo.device(device) / "Download.SLEEP").write_text("0.6")
    assert demo.install("manifest-v2.yaml").returncode == 0
    gateway_installed = max(_ends(demo, "G13", "ArtifactVerifyReboot"))
    rtos_downloads = _starts(demo, "R998", "Download") + _starts(demo, "R456", "Download")
    assert gateway_installed < min(rtos_downloads)
    # parallel: the second board starts its Download before the first one's ends
    assert max(rtos_downloads) < min(_ends(demo, "R998", "Download") + _ends(demo, "R456", "Download"))
    # barrier: nobody installs before every board of the group has downloaded
    assert max(_ends(demo, "R998", "Download") + _ends(demo, "R456", "Download")) < min(
        _starts(demo, "R998", "ArtifactInstall") + _starts(demo, "R456", "ArtifactInstall")
    )


def test_it_commits_only_after_every_group_installed(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    installs = [
        ts
        for ts, _, s, edge in demo.calls()
        if s in ("ArtifactInstall", "ArtifactVerifyReboot") and edge == "end"
    ]
    commits = [ts for ts, _, s, edge in demo.calls() if s == "ArtifactCommit" and edge == "start"]
    assert max(installs) < min(commits)
    assert min(_starts(demo, "G13", "ArtifactCommit")) < min(_starts(demo, "R998", "ArtifactCommit"))


def test_it_rolls_the_whole_system_back_when_a_late_commit_fails(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    (demo.root / "calls.log").unlink()
    demo.fail("R456", "ArtifactCommit")
    result = demo.install("manifest-v3.yaml")
    assert result.returncode == 1
    assert demo.versions() == V2
    rolled_back = ["ArtifactRollback", "ArtifactFailure", "Cleanup"]
    assert demo.states("R456") == ["Download", "ArtifactInstall", "ArtifactCommit", *rolled_back]
    # R998 committed before R456 failed: it is rolled back too
    assert demo.states("R998") == ["Download", "ArtifactInstall", "ArtifactCommit", *rolled_back]
    assert demo.states("G13") == [
        "Download",
        "ArtifactInstall",
        "ArtifactReboot",
        "ArtifactVerifyReboot",
        "ArtifactCommit",
        "ArtifactRollback",
        "ArtifactRollbackReboot",
        "ArtifactVerifyRollbackReboot",
        "ArtifactFailure",
        "Cleanup",
    ]
    # newest group first: the boards are rolled back before the gateway
    assert max(_ends(demo, "R456", "ArtifactRollback")) < min(_starts(demo, "G13", "ArtifactRollback"))
    _assert_gateway_never_behind(demo)
    status = json.loads(demo.run("history", "--json").stdout)[0]
    assert status["status"] == "rolled_back"
    assert "rtos.R456" in status["reason"] and "ArtifactCommit" in status["reason"]


def test_it_keeps_the_transition_constraint_on_success(demo: DemoSystem) -> None:
    for manifest in ("manifest-v2.yaml", "manifest-v3.yaml"):
        assert demo.install(manifest).returncode == 0
    assert demo.versions() == V3
    _assert_gateway_never_behind(demo)


def test_it_skips_components_already_at_the_target(demo: DemoSystem) -> None:
    demo.fail("R456", "ArtifactCommit")  # would fail if anything ran
    result = demo.install("manifest-v1.yaml")
    assert result.returncode == 0, result.stderr
    assert all(demo.states(d) == [] for d in V1)
    assert demo.versions() == V1


def test_it_only_updates_the_components_that_differ(demo: DemoSystem) -> None:
    (demo.device("R998") / "version").write_text("rtos-v2\n")
    assert demo.install("manifest-v2.yaml").returncode == 0
    assert demo.states("R998") == []
    assert demo.states("R456") == INSTALL


def test_a_download_failure_gets_only_cleanup_and_rolls_back_lower_groups(demo: DemoSystem) -> None:
    demo.fail("R456", "Download")
    assert demo.install("manifest-v2.yaml").returncode == 1
    assert demo.states("R456") == ["Download", "Cleanup"]
    assert demo.states("R998") == ["Download", "Cleanup"]
    assert "ArtifactRollback" in demo.states("G13")
    assert demo.versions() == V1


def test_it_reports_inconsistent_when_a_touched_component_cannot_roll_back(demo: DemoSystem) -> None:
    demo.answer("R998", "SupportsRollback", "No")
    demo.fail("R456", "ArtifactCommit")
    assert demo.install("manifest-v2.yaml").returncode == 1
    record = json.loads(demo.run("history", "--json").stdout)[0]
    assert record["status"] == "inconsistent"
    assert record["components"] == ["rtos.R998"]
    assert "ArtifactRollback" not in demo.states("R998")
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v2"}


def test_a_failed_rollback_is_inconsistent_too(demo: DemoSystem) -> None:
    demo.fail("R456", "ArtifactCommit")
    demo.fail("G13", "ArtifactRollback")
    assert demo.install("manifest-v2.yaml").returncode == 1
    record = json.loads(demo.run("history", "--json").stdout)[0]
    assert record["status"] == "inconsistent"
    assert record["components"] == ["gateway.G13"]


def test_an_unusable_artifact_refuses_the_update_up_front(demo: DemoSystem) -> None:
    (demo.system / "artifacts" / "rtos-v2.mender").unlink()
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 2
    assert "rtos-v2.mender" in result.stderr and "nothing was changed" in result.stderr
    assert all(demo.states(d) == [] for d in V1)
    assert demo.versions() == V1


def test_an_artifact_for_another_device_type_is_refused_up_front(demo: DemoSystem) -> None:
    manifest = (
        (demo.system / "manifest-v2.yaml")
        .read_text()
        .replace("artifacts/rtos-v2.mender", "artifacts/gateway-v2.mender")
    )
    (demo.system / "wrong.yaml").write_text(manifest)
    result = demo.install("wrong.yaml")
    assert result.returncode == 2
    assert "not component type 'rtos'" in result.stderr
    assert all(demo.states(d) == [] for d in V1)


def test_install_previous_goes_back_to_the_last_known_good_manifest(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    assert demo.install("manifest-v3.yaml").returncode == 0
    result = demo.run("install", "--previous")
    assert result.returncode == 0, result.stderr
    assert demo.versions() == V2
    status = json.loads(demo.run("status", "--json").stdout)
    assert status["manifests"] == {"active": "system-core-v2", "previous": "system-core-v3"}
    assert (demo.datastore / "manifests" / "active.yaml").read_text().count("system-core-v2") == 1


def test_every_interface_call_is_a_step_row(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    steps = json.loads(demo.run("history", "--json").stdout)[0]["steps"]
    logged = [(d, s) for _, d, s, edge in demo.calls() if edge == "start"]
    assert len(steps) == len(logged)
    assert [s["state"] for s in steps] == [s for _, s in logged] or sorted(
        s["state"] for s in steps
    ) == sorted(s for _, s in logged)
    commit = next(s for s in steps if s["component"] == "rtos.R456" and s["state"] == "ArtifactCommit")
    assert commit["argv"][1:] == ["ArtifactCommit", commit["argv"][2], "rtos", "R456"]
    assert commit["exit_code"] == 0 and commit["ended_at"] >= commit["started_at"]


def test_the_seed_form_installs_with_the_component_id_in_argv(demo: DemoSystem) -> None:
    result = demo.install("seed-manifest-v2.yaml")
    assert result.returncode == 0, result.stderr
    assert demo.versions() == V2
    steps = json.loads(demo.run("history", "--json").stdout)[0]["steps"]
    commit = next(s for s in steps if s["component"] == "gateway.G13" and s["state"] == "ArtifactCommit")
    assert commit["argv"][3:5] == ["gateway", "G13"]


def test_a_second_install_while_one_is_stopped_exits_3(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml", "--stop-before", "ArtifactCommit").returncode == 0
    assert demo.install("manifest-v3.yaml").returncode == 3
    assert demo.run("resume").returncode == 0
    assert demo.versions() == V2


def test_rollback_of_a_stopped_deployment_restores_the_system(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml", "--stop-before", "ArtifactCommit").returncode == 0
    assert demo.versions() == V2  # installed, not committed
    result = demo.run("rollback")
    assert result.returncode == 1
    assert demo.versions() == V1
    assert demo.run("resume").returncode == 2


def test_resume_and_rollback_with_nothing_in_progress_exit_2(demo: DemoSystem) -> None:
    assert demo.run("resume").returncode == 2
    assert demo.run("rollback").returncode == 2


def test_exit_on_reboot_exits_4_for_an_automatic_reboot_then_resumes(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    result = demo.install("manifest-v2.yaml", "--exit-on-reboot")
    assert result.returncode == 4, result.stderr
    assert demo.states("G13") == ["Download", "ArtifactInstall"]
    result = demo.run("resume")
    assert result.returncode == 0, result.stderr
    assert demo.versions()["R998"] == "rtos-v2"
    assert "ArtifactVerifyReboot" in demo.states("G13")


def test_an_automatic_reboot_runs_the_reboot_command(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    assert demo.install("manifest-v2.yaml").returncode == 0
    assert (demo.root / "host-rebooted").exists()
    assert "ArtifactReboot" not in demo.states("G13")


def test_show_provides_prints_type_id_key_value(demo: DemoSystem) -> None:
    result = demo.run("show-provides")
    assert result.returncode == 0, result.stderr
    assert "gateway.G13.rootfs-image.gateway.version=gateway-v1" in result.stdout.splitlines()
    assert "rtos.R456.rootfs-image.rtos.version=rtos-v1" in result.stdout.splitlines()


def test_plan_shows_what_would_change_without_touching_anything(demo: DemoSystem) -> None:
    (demo.device("R998") / "version").write_text("rtos-v2\n")
    result = demo.run("plan", str(demo.system / "manifest-v2.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    by_key = {c["key"]: c for c in plan["components"]}
    assert (
        by_key["gateway.G13"]["current"] == "gateway-v1" and by_key["gateway.G13"]["target"] == "gateway-v2"
    )
    assert by_key["gateway.G13"]["reboot"] == "Yes" and by_key["gateway.G13"]["rollback"] == "Yes"
    assert by_key["rtos.R998"]["action"] == "skip"
    assert plan["groups"] == [[10, ["gateway.G13"]], [20, ["rtos.R998", "rtos.R456"]]]
    assert all(demo.states(d) == [] for d in V1)


def test_status_shows_the_versions_after_the_deployment(demo: DemoSystem) -> None:
    demo.fail("R456", "ArtifactCommit")
    assert demo.install("manifest-v2.yaml").returncode == 1
    status = json.loads(demo.run("status", "--json").stdout)
    assert {c["key"]: c["version"] for c in status["components"]} == {
        "gateway.G13": "gateway-v1",
        "rtos.R456": "rtos-v1",
        "rtos.R998": "rtos-v1",
    }
    (demo.device("R456") / "ArtifactCommit.FAIL").unlink()
    assert demo.install("manifest-v2.yaml").returncode == 0
    status = json.loads(demo.run("status", "--json").stdout)
    assert {c["key"]: c["version"] for c in status["components"]}["rtos.R456"] == "rtos-v2"
    assert status["manifests"]["active"] == "system-core-v2"


def test_no_work_directory_is_left_behind(demo: DemoSystem) -> None:
    demo.fail("R456", "ArtifactCommit")
    assert demo.install("manifest-v2.yaml").returncode == 1
    assert demo.install("manifest-v1.yaml").returncode == 0
    work = demo.datastore / "work"
    assert not work.exists() or list(work.iterdir()) == []


def test_it_waits_for_the_host_to_go_down_after_the_reboot_command(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    demo.env["ORCH_REBOOT_WAIT_SECONDS"] = "2"
    started = time.monotonic()
    assert demo.install("manifest-v2.yaml").returncode == 0
    assert time.monotonic() - started >= 2
    rebooted = (demo.root / "host-rebooted").stat().st_mtime
    verify = min(_starts(demo, "G13", "ArtifactVerifyReboot"))
    assert verify - rebooted >= 2


def test_missing_artifact_files_are_all_named_before_any_component_is_queried(demo: DemoSystem) -> None:
    text = (demo.system / "manifest-v2.yaml").read_text()
    for name in ("gateway-v2", "rtos-v2"):
        text = text.replace(f"    artifact_name: {name}\n", "").replace(
            f"{name}.mender", f"gone-{name}.mender"
        )
    (demo.system / "gone.yaml").write_text(text)
    result = demo.install("gone.yaml")
    assert result.returncode == 2
    problems = result.stderr.splitlines()[1:]
    assert [p.split(": ")[1] for p in problems] == [
        "component_types.gateway.artifact_path",
        "component_types.rtos.artifact_path",
    ]
    assert demo.calls() == []  # not even Identity or Provides
