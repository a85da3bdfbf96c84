"""Deployments through the service and a real prefork worker, on Redis and on the file-system
broker: the same records as a CLI run, progress visible while it runs, one execution per claim."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import redis
from django.db import transaction

from tests.integration.conftest import DemoSystem
from tests.worker.conftest import Appliance, wait_for
from updates import selectors
from updates.actors import Actor
from updates.models import Deployment
from updates.services import BusyError, dispatch
from worker.celery import TASK_RUN, app

V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}


def _start(appliance: Appliance, manifest: str = "manifest-v2.yaml") -> Deployment:
    return dispatch.deployment_start(
        manifest_path=appliance.system.system / manifest, actor=Actor("user", "test")
    )


def _records(history: Mapping[str, Any]) -> dict[str, Any]:
    """What a run recorded, without ids, times and paths (argv holds the work dir)."""
    steps: dict[str, list[tuple[object, ...]]] = {}
    for s in history["steps"]:
        steps.setdefault(s["component"], []).append(
            (s["state"], s["exit_code"], s["answer"], s["error"], s["ok"])
        )
    return {k: history[k] for k in ("manifest", "kind", "status", "reason", "components")} | {"steps": steps}


@pytest.mark.parametrize("broker", ["redis", "filesystem"], indirect=True)
def test_it_runs_a_deployment_on_a_worker_with_the_same_records_as_the_cli(
    appliance: Appliance, demo: DemoSystem
) -> None:
    appliance.start_worker()
    deployment = appliance.wait_finished(_start(appliance).pk)
    assert deployment.status == "succeeded", deployment.reason
    assert deployment.who == Actor("user", "test")

    cli = demo.install("manifest-v2.yaml")
    assert cli.returncode == 0, cli.stderr
    assert appliance.system.versions() == demo.versions() == V2
    for device in V2:
        assert appliance.system.states(device) == demo.states(device)
    cli_history = json.loads(demo.run("history", "--json").stdout)[0]
    assert _records(selectors.history_report()[0]) == _records(cli_history)


def test_it_shows_each_step_while_the_deployment_runs(appliance: Appliance) -> None:
    (appliance.system.device("R456") / "ArtifactInstall.SLEEP").write_text("1.5")
    appliance.start_worker()
    deployment = _start(appliance)
    started = appliance.system.device("R456") / "ArtifactInstall.STARTED"
    wait_for(started.exists, 30, lambda: "R456 never reached ArtifactInstall")

    running = Deployment.objects.get(pk=deployment.pk)
    open_steps = running.steps.filter(ended_at__isnull=True).values_list("component", "state")
    assert running.status == "running"
    assert ("rtos.R456", "ArtifactInstall") in list(open_steps)
    assert running.steps.filter(component="rtos.R998", state="Download", exit_code=0).exists()
    assert appliance.wait_finished(deployment.pk).status == "succeeded"


def test_it_executes_a_duplicated_message_once(appliance: Appliance) -> None:
    worker = appliance.start_worker(concurrency=2)
    deployment = _start(appliance)
    app.send_task(TASK_RUN, args=(deployment.pk,))  # the same message again: a redelivery
    assert appliance.wait_finished(deployment.pk).status == "succeeded"

    wait_for(lambda: worker.count(f"Task {TASK_RUN}") >= 4, 30, worker.text)  # 2 received, 2 done
    assert worker.count("succeeded in") >= 2
    assert all(appliance.system.states(d).count("Download") == 1 for d in V2)
    recorded = list(Deployment.objects.get(pk=deployment.pk).steps.values_list("component", "state"))
    assert recorded.count(("rtos.R456", "ArtifactCommit")) == 1
    assert Deployment.objects.count() == 1


def test_it_refuses_a_second_deployment_while_one_is_in_progress(appliance: Appliance) -> None:
    first = _start(appliance)
    with pytest.raises(BusyError):
        _start(appliance, "manifest-v3.yaml")
    assert list(Deployment.objects.values_list("pk", "status")) == [(first.pk, "queued")]


def test_it_enqueues_only_after_the_transaction_commits(appliance: Appliance) -> None:
    queue = redis.Redis.from_url(app.conf.broker_url)
    with transaction.atomic():
        _start(appliance)
        assert queue.llen("orchestrator") == 0
    assert queue.llen("orchestrator") == 1


def test_it_runs_a_queued_deployment_whose_message_was_lost_when_a_worker_starts(
    appliance: Appliance,
) -> None:
    from updates.services import deployment_create

    deployment = deployment_create(
        manifest_path=appliance.system.system / "manifest-v2.yaml", actor=Actor("user", "api")
    )
    appliance.start_worker()
    assert appliance.wait_finished(deployment.pk).status == "succeeded"
    assert appliance.system.versions() == V2


def test_it_refreshes_provides_and_inventory_on_a_worker(appliance: Appliance) -> None:
    from devices.models import Component

    appliance.start_worker()
    dispatch.components_refresh_start()
    wait_for(lambda: Component.objects.count() == 3, 30, appliance.workers[0].text)
    board = Component.objects.get(key="rtos.R998")
    assert board.version == "rtos-v1"
    assert board.inventory == {"device_id": ["R998"], "version": ["rtos-v1"]}
