"""`orchestrator resume --interrupted`: what the boot-time one-shot unit runs before the worker
starts. It continues only what a dead owner left running, by the crash rules, and answers exit 2
"nothing interrupted: <why>" (touching nothing) otherwise."""

from __future__ import annotations

from tests.integration.conftest import DemoSystem
from tests.integration.test_crash_matrix import (
    V1,
    V2,
    Expected,
    kill_during,
    last_deployment,
    sleep_in,
    start_install,
    verify,
    wait_started,
)

ONCE = ("Download", "ArtifactInstall", "ArtifactReboot", "ArtifactVerifyReboot")


def test_it_rolls_back_a_deployment_whose_cli_was_killed_in_artifact_install(demo: DemoSystem) -> None:
    sleep_in(demo, "R456", "ArtifactInstall")
    kill_during(demo, start_install(demo), "R456", "ArtifactInstall")
    assert last_deployment(demo)["status"] == "running"

    resumed = demo.run("resume", "--interrupted")

    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # the update failed: rolled back
    assert "left running by a dead process: resuming it" in resumed.stdout
    verify(demo, Expected("rolled_back", V1), interrupted=("R456", "ArtifactInstall"))
    for device in V1:
        states = demo.states(device)
        assert all(states.count(state) <= 1 for state in ONCE), (device, states)
    again = demo.run("resume", "--interrupted")
    assert again.returncode == 2
    assert again.stdout.strip() == "nothing interrupted: no deployment in progress"


def test_it_leaves_a_stopped_deployment_alone(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml", "--stop-before", "ArtifactCommit").returncode == 0
    before = last_deployment(demo)
    calls = len(demo.calls())

    resumed = demo.run("resume", "--interrupted")

    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert (
        resumed.stdout.strip()
        == f"nothing interrupted: deployment {before['id']} is stopped: `resume` or `rollback` it"
    )
    assert len(demo.calls()) == calls  # no interface was called
    assert last_deployment(demo)["status"] == "stopped"
    assert demo.run("resume").returncode == 0  # the operator's resume still works
    verify(demo, Expected("succeeded", V2))


def test_it_leaves_a_reboot_required_deployment_to_the_update_module(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    assert demo.install("manifest-v2.yaml", "--exit-on-reboot").returncode == 4
    calls = len(demo.calls())

    resumed = demo.run("resume", "--interrupted")

    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "nothing interrupted:" in resumed.stdout and "waits for a host reboot" in resumed.stdout
    assert len(demo.calls()) == calls
    assert last_deployment(demo)["status"] == "reboot_required"


def test_it_refuses_run_options_with_interrupted(demo: DemoSystem) -> None:
    refused = demo.run("resume", "--interrupted", "--stop-before", "ArtifactCommit")
    assert refused.returncode == 2
    assert "the deployment's own options" in refused.stderr


def test_it_leaves_a_deployment_whose_owner_is_alive(demo: DemoSystem) -> None:
    sleep_in(demo, "R456", "ArtifactInstall", "3")
    install = start_install(demo)
    wait_started(demo, install, "R456", "ArtifactInstall")

    resumed = demo.run("resume", "--interrupted")

    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "nothing interrupted:" in resumed.stdout and "is running (owner" in resumed.stdout
    assert install.wait(120) == 0
    verify(demo, Expected("succeeded", V2))
