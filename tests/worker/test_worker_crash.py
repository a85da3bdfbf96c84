"""A worker killed in the middle of a deployment: the next worker (or the same worker's next pool
process) continues it by the crash-safety rules, and no state runs twice that must not."""

from __future__ import annotations

import pytest

from tests.worker.conftest import Appliance, wait_for
from updates.actors import Actor
from updates.models import Deployment
from updates.services import dispatch

V1 = {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
ONCE = ("Download", "ArtifactInstall", "ArtifactReboot", "ArtifactVerifyReboot")


def _start_and_wait_in_install(appliance: Appliance) -> Deployment:
    """Start v2 and return while R456 is inside its (slow) ArtifactInstall, after the gateway
    installed and rebooted in the first order group."""
    board = appliance.system.device("R456")
    (board / "ArtifactInstall.SLEEP").write_text("30")
    deployment = dispatch.deployment_start(
        manifest_path=appliance.system.system / "manifest-v2.yaml", actor=Actor("user", "test")
    )
    wait_for((board / "ArtifactInstall.STARTED").exists, 30, appliance.workers[0].text)
    (board / "ArtifactInstall.SLEEP").unlink()
    return deployment


def _assert_rolled_back_without_repeats(appliance: Appliance, deployment_id: int) -> None:
    deployment = appliance.wait_finished(deployment_id)
    assert deployment.status == "rolled_back", deployment.reason
    assert "interrupted during ArtifactInstall" in deployment.reason
    assert appliance.system.versions() == V1
    for device in V1:
        states = appliance.system.states(device)
        assert all(states.count(state) <= 1 for state in ONCE), (device, states)
        assert "ArtifactCommit" not in states
    assert "ArtifactRollback" in appliance.system.states("R456")
    assert "ArtifactRollbackReboot" in appliance.system.states("G13")
    interrupted = deployment.steps.get(component="rtos.R456", state="ArtifactInstall")
    assert interrupted.error.startswith("interrupted")


@pytest.mark.parametrize("broker", ["redis", "filesystem"], indirect=True)
def test_it_rolls_back_after_the_worker_is_killed_when_a_new_worker_starts(appliance: Appliance) -> None:
    worker = appliance.start_worker()
    deployment = _start_and_wait_in_install(appliance)
    worker.kill()
    assert Deployment.objects.get(pk=deployment.pk).status == "running"

    appliance.start_worker()
    _assert_rolled_back_without_repeats(appliance, deployment.pk)


def test_it_continues_in_the_same_worker_when_its_pool_process_is_killed(appliance: Appliance) -> None:
    worker = appliance.start_worker()
    deployment = _start_and_wait_in_install(appliance)
    worker.kill_pool_process()  # task_reject_on_worker_lost puts the message back

    _assert_rolled_back_without_repeats(appliance, deployment.pk)
    assert worker.proc.poll() is None
    # The takeover timer (worker/takeover.py) may continue it before the worker logs the loss.
    lost = ("WorkerLostError", "exited with 'signal 9")
    wait_for(lambda: any(text in worker.text() for text in lost), 30, worker.text)
