"""Driven by Mender's `mender-orchestrator-manifest` update module: its exact command sequence
(docs/protocol.md §6.1), with the module's reading of our exit codes:
ArtifactInstall and ArtifactRollback map 4 to "ok, reboot needed" and 0 to "ok, no reboot";
anything else fails the state, and the client then calls ArtifactRollback."""

from __future__ import annotations

from tests.integration.conftest import DemoSystem
from tests.integration.test_crash_matrix import V1, V2, Expected, verify

INSTALL = ["--stop-before", "ArtifactCommit", "--stop-before", "ArtifactRollback", "--stop-before", "Cleanup"]
COMMIT = ["resume", "--stop-before", "ArtifactRollback", "--stop-before", "Cleanup"]
ROLLBACK = ["rollback", "--stop-before", "Cleanup", "--exit-on-reboot"]
CLEANUP = ["resume"]


def _artifact_install(demo: DemoSystem) -> int:
    return demo.install("manifest-v2.yaml", *INSTALL, "--exit-on-reboot").returncode


def test_it_installs_through_the_module_sequence(demo: DemoSystem) -> None:
    assert _artifact_install(demo) == 0  # no host reboot needed: the gateway reboots itself
    assert "ArtifactCommit" not in demo.states("R456")
    assert demo.run(*COMMIT).returncode == 0
    assert "Cleanup" not in demo.states("R456")
    assert demo.run(*CLEANUP).returncode == 0
    verify(demo, Expected("succeeded", V2))


def test_it_installs_through_the_module_sequence_with_a_host_reboot(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    assert _artifact_install(demo) == 4  # the module answers Automatic; the client reboots
    assert demo.run(*COMMIT).returncode == 0  # remaining groups and the commit loop run here
    assert demo.run(*CLEANUP).returncode == 0
    assert demo.states("G13") == [
        "Download",
        "ArtifactInstall",
        "ArtifactVerifyReboot",
        "ArtifactCommit",
        "Cleanup",
    ]
    verify(demo, Expected("succeeded", V2))


def test_a_failed_commit_makes_the_module_roll_back(demo: DemoSystem) -> None:
    demo.fail("R456", "ArtifactCommit")
    assert _artifact_install(demo) == 0
    # The commit fails: the module must see a failure (not 0), or the client would clean up
    # and report success with the system rolled back behind its back.
    assert demo.run(*COMMIT).returncode == 1
    assert "ArtifactRollback" not in demo.states("G13")  # left to the client's ArtifactRollback
    assert demo.run(*ROLLBACK).returncode == 0
    assert demo.versions() == V1
    assert demo.run(*CLEANUP).returncode == 1
    verify(demo, Expected("rolled_back", V1))


def test_a_failed_install_makes_the_module_roll_back(demo: DemoSystem) -> None:
    demo.fail("R456", "ArtifactInstall")
    assert _artifact_install(demo) == 1
    assert demo.run(*ROLLBACK).returncode == 0
    assert demo.run(*CLEANUP).returncode == 1
    assert demo.states("R456") == [
        "Download",
        "ArtifactInstall",
        "ArtifactRollback",
        "ArtifactFailure",
        "Cleanup",
    ]
    verify(demo, Expected("rolled_back", V1))


def test_a_module_rollback_that_needs_a_host_reboot_exits_4(demo: DemoSystem) -> None:
    demo.answer("G13", "NeedsArtifactReboot", "Automatic")
    demo.fail("R456", "ArtifactCommit")
    assert _artifact_install(demo) == 4
    assert demo.run(*COMMIT).returncode == 1
    assert demo.run(*ROLLBACK).returncode == 4  # the client reboots into the old gateway image
    assert demo.run(*CLEANUP).returncode == 1
    assert demo.states("G13")[-3:] == ["ArtifactVerifyRollbackReboot", "ArtifactFailure", "Cleanup"]
    verify(demo, Expected("rolled_back", V1))


def test_a_download_failure_in_the_first_group_waits_for_the_client(demo: DemoSystem) -> None:
    # MEN-9702: with --stop-before Cleanup the orchestrator does not finish on its own.
    demo.fail("G13", "Download")
    assert _artifact_install(demo) == 1
    assert "Cleanup" not in demo.states("G13")
    assert demo.run(*CLEANUP).returncode == 1
    assert demo.states("G13") == ["Download", "Cleanup"]
    verify(demo, Expected("rolled_back", V1))
