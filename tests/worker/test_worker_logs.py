"""A real worker's logs (docs/logging.md): Celery's lines and ours in one format, JSON when
asked, and every line of a deployment carrying its id."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.worker.conftest import Appliance, wait_for
from updates.actors import Actor
from updates.services import dispatch
from worker.celery import TASK_RUN


def _lines(text: str) -> list[dict[str, Any]]:
    """The worker runs without its banner (`-q`): every line it writes must be a JSON object."""
    return [json.loads(line) for line in text.splitlines()]


def test_it_logs_a_deployment_on_a_worker_as_json_lines_that_carry_its_id(appliance: Appliance) -> None:
    worker = appliance.spawn_worker(env={"ORCH_LOG_FORMAT": "json"}, quiet=True)
    worker.wait_ready()
    manifest = appliance.system.system / "manifest-v2.yaml"
    pk = dispatch.deployment_start(manifest_path=manifest, actor=Actor("user", "test")).pk
    deployment = appliance.wait_finished(pk)
    assert deployment.status == "succeeded"
    # The end line follows the final status (after the post-run refresh).
    wait_for(lambda: '"outcome": ' in worker.text(), 30, worker.text)

    lines = _lines(worker.text())
    celery = [line for line in lines if line["logger"].startswith("celery")]
    assert any(f"Task {TASK_RUN}" in line["message"] and "received" in line["message"] for line in celery)
    ours = [line for line in lines if line["logger"] == "orchestrator.deployment"]
    assert ours and all(line["deployment_id"] == pk for line in ours)
    assert ours[0]["actor"] == deployment.who.label == "user test"
    assert ours[-1]["outcome"] == "succeeded"
    states = {(line["component"], line["state"]) for line in ours if "exit_code" in line}
    assert ("rtos.R456", "ArtifactCommit") in states and ("gateway.G13", "Download") in states
    received = next(line for line in celery if "received" in line["message"])
    assert "deployment_id" not in received  # outside the run: no id


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_supervised_worker_logs_one_time_format_and_no_broker_url(appliance: Appliance) -> None:
    """As bin/run starts it: the supervisor's lines and the worker's share one time format, and
    neither the banner nor "Connected to redis://…" puts the broker URL (a password) in the log."""
    worker = appliance.spawn_worker(supervised=True, quiet=True)
    worker.wait_ready()
    text = worker.text()
    assert "://" not in text, text
    stamped = [line for line in text.splitlines() if line[:1].isdigit() or line.startswith("[")]
    assert any(" orchestrator.supervise started pid " in line for line in stamped), text
    assert any(" celery.apps.worker " in line and line.endswith(" ready.") for line in stamped), text
    assert any(line.endswith(" Connected to the broker (redis)") for line in stamped), text
    for line in stamped:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ \S+ ", line), line
