"""Resume and rollback through a real prefork worker on Redis: a deployment the command line
stopped before ArtifactCommit is continued by `deployment_resume_start` / `deployment_rollback_start`,
a duplicated continue message runs once (the fingerprint), and a worker whose Redis visibility
timeout is not longer than the longest interface call refuses to start."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import redis

from tests.integration.conftest import CLI
from tests.worker.conftest import Appliance, wait_for
from updates.actors import Actor
from updates.models import Deployment
from updates.services import dispatch
from worker.celery import TASK_RESUME, TASK_ROLLBACK, app

OPERATOR = Actor("user", "operator")  # who asks the worker to resume or roll back
V1 = {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}
ENDED = ("succeeded", "rolled_back", "inconsistent", "rejected")
# States that must run at most once per device in a whole deployment, however often it is continued.
ONCE = (
    "Download",
    "ArtifactInstall",
    "ArtifactReboot",
    "ArtifactVerifyReboot",
    "ArtifactCommit",
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "Cleanup",
)


def _install_stopped(appliance: Appliance) -> Deployment:
    """`install --stop-before ArtifactCommit` through the real CLI, on the worker's database."""
    cmd = [
        CLI,
        "install",
        str(appliance.system.system / "manifest-v2.yaml"),
        "--stop-before",
        "ArtifactCommit",
    ]
    done = subprocess.run(cmd, env=appliance.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    deployment = Deployment.objects.get()
    assert deployment.status == "stopped", deployment.reason
    assert deployment.position["step"] == "stopped-before-ArtifactCommit"
    assert all("ArtifactCommit" not in appliance.system.states(d) for d in V2)
    return deployment


def _wait_status(appliance: Appliance, deployment_id: int, statuses: tuple[str, ...]) -> Deployment:
    wait_for(lambda: Deployment.objects.get(pk=deployment_id).status in statuses, 60, appliance._logs)
    return Deployment.objects.get(pk=deployment_id)


def _assert_no_state_twice(appliance: Appliance, deployment: Deployment) -> None:
    """By the demo's calls.log (what the devices saw) and by the step rows (what was recorded)."""
    for device in V2:
        states = appliance.system.states(device)
        assert all(states.count(state) <= 1 for state in ONCE), (device, states)
    recorded = list(deployment.steps.values_list("component", "state"))
    repeated = {step for step in recorded if step[1] in ONCE and recorded.count(step) > 1}
    assert not repeated, repeated


def _queued_args(name: str) -> list[object]:
    """The arguments of the one message waiting in the Redis queue (kombu's JSON envelope)."""
    queue = redis.Redis.from_url(app.conf.broker_url)
    assert queue.llen("orchestrator") == 1
    envelope = json.loads(queue.lindex("orchestrator", 0) or b"{}")
    assert envelope["headers"]["task"] == name
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return list(args)


def test_it_resumes_a_stopped_deployment_on_a_worker(appliance: Appliance) -> None:
    stopped = _install_stopped(appliance)
    worker = appliance.start_worker()
    # The worker's start recovery leaves a stopped deployment to its operator.
    wait_for(lambda: f"deployment {stopped.pk} (stopped) left alone" in worker.text(), 30, worker.text)

    dispatch.deployment_resume_start(deployment_id=stopped.pk, actor=OPERATOR)
    deployment = _wait_status(appliance, stopped.pk, ENDED)

    assert deployment.status == "succeeded", deployment.reason
    assert appliance.system.versions() == V2
    for device in V2:
        assert appliance.system.states(device).count("ArtifactCommit") == 1
        assert "ArtifactRollback" not in appliance.system.states(device)
    assert deployment.steps.filter(state="ArtifactCommit", exit_code=0).count() == len(V2)
    _assert_no_state_twice(appliance, deployment)


def test_it_rolls_back_a_stopped_deployment_on_a_worker(appliance: Appliance) -> None:
    stopped = _install_stopped(appliance)
    appliance.start_worker()

    dispatch.deployment_rollback_start(deployment_id=stopped.pk, actor=OPERATOR)
    deployment = _wait_status(appliance, stopped.pk, ENDED)

    assert deployment.status == "rolled_back", deployment.reason
    assert appliance.system.versions() == V1
    for device in V1:
        states = appliance.system.states(device)
        assert "ArtifactCommit" not in states
        assert states.count("ArtifactRollback") == 1, (device, states)
    assert not deployment.steps.filter(state="ArtifactCommit").exists()
    _assert_no_state_twice(appliance, deployment)


def test_it_ignores_a_resume_message_delivered_again_after_the_deployment_moved_on(
    appliance: Appliance,
) -> None:
    stopped = _install_stopped(appliance)
    # The service's own message, read back from Redis, so the duplicate is byte-for-byte its args.
    dispatch.deployment_resume_start(deployment_id=stopped.pk, stop_before=["Cleanup"], actor=OPERATOR)
    message = _queued_args(TASK_RESUME)
    assert message == [stopped.pk, dispatch.deployment_fingerprint(stopped), ["Cleanup"]]
    worker = appliance.start_worker()

    # The first delivery commits everything and stops again, before Cleanup: still in progress.
    def stopped_before_cleanup() -> bool:
        step: str = Deployment.objects.get(pk=stopped.pk).position.get("step", "")
        return step == "stopped-before-Cleanup"

    wait_for(stopped_before_cleanup, 60, appliance._logs)
    app.send_task(TASK_RESUME, args=message)  # the same message again (a Redis redelivery, say)
    wait_for(lambda: "moved on since the request: nothing to do" in worker.text(), 30, worker.text)

    # Without the fingerprint the duplicate would take the stopped deployment over and run it again.
    assert worker.count(f"deployment {stopped.pk}: stopped") == 1
    deployment = Deployment.objects.get(pk=stopped.pk)
    assert deployment.status == "stopped"
    assert deployment.position["step"] == "stopped-before-Cleanup"
    for device in V2:
        states = appliance.system.states(device)
        assert states.count("ArtifactCommit") == 1, (device, states)
        assert "Cleanup" not in states
    assert deployment.steps.filter(state="ArtifactCommit").count() == len(V2)
    _assert_no_state_twice(appliance, deployment)


def test_it_rolls_back_once_when_the_rollback_message_is_delivered_twice(appliance: Appliance) -> None:
    stopped = _install_stopped(appliance)
    worker = appliance.start_worker(concurrency=2)
    message = (stopped.pk, dispatch.deployment_fingerprint(stopped))
    app.send_task(TASK_ROLLBACK, args=message)
    app.send_task(TASK_ROLLBACK, args=message)  # both pool processes may take one at once

    deployment = _wait_status(appliance, stopped.pk, ENDED)
    assert deployment.status == "rolled_back", deployment.reason
    wait_for(lambda: worker.count(f"Task {TASK_ROLLBACK}") >= 4, 30, worker.text)  # 2 received, 2 done
    assert worker.count(f"deployment {stopped.pk}: rolled_back") == 1
    assert appliance.system.versions() == V1
    for device in V1:
        assert appliance.system.states(device).count("ArtifactRollback") == 1
    _assert_no_state_twice(appliance, deployment)


@pytest.mark.parametrize(
    ("conf", "env", "values"),
    [
        # InterfaceTimeoutSeconds from the configuration file, equal to the default visibility timeout.
        ({"InterfaceTimeoutSeconds": 86400}, {}, ("86400", "86400")),
        # CELERY_VISIBILITY_TIMEOUT lowered below the default InterfaceTimeoutSeconds (4 h).
        ({}, {"CELERY_VISIBILITY_TIMEOUT": "600"}, ("600", "14400")),
    ],
    ids=["conf", "env"],
)
def test_it_refuses_to_start_a_worker_whose_visibility_timeout_is_too_short(
    appliance: Appliance, conf: dict[str, int], env: dict[str, str], values: tuple[str, str]
) -> None:
    if conf:
        (appliance.system.root / "conf" / "mender-orchestrator.conf").write_text(json.dumps(conf))
    worker = appliance.spawn_worker(env=env)

    assert worker.proc.wait(30) != 0
    visibility, interface = values
    assert (
        f"CELERY_VISIBILITY_TIMEOUT ({visibility} s) must exceed InterfaceTimeoutSeconds ({interface} s)"
        in worker.text()
    ), worker.text()
    assert " ready." not in worker.text()


def test_it_refuses_to_start_a_worker_on_a_broken_configuration(appliance: Appliance) -> None:
    (appliance.system.root / "conf" / "mender-orchestrator.conf").write_text(
        '{"InterfaceTimeoutSeconds": "soon"}'
    )
    worker = appliance.spawn_worker()

    assert worker.proc.wait(30) != 0
    assert "worker refuses to start" in worker.text() and "InterfaceTimeoutSeconds" in worker.text(), (
        worker.text()
    )
    assert " ready." not in worker.text()
