"""Bursts on the embedded file-system broker (issue 15): several producer processes, CPU burners
beside the worker, bad files in the queue folder, a worker killed in the middle. Every deployment
runs exactly once and a worker stays alive."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from tests.worker.conftest import (
    Appliance,
    NoopSystem,
    cpu_burners,
    noop_system,
    producers_wait,
    spawn_consumers,
    spawn_message_producers,
    spawn_producers,
    wait_for,
)
from updates import selectors
from updates.actors import Actor
from updates.models import Deployment
from updates.services import dispatch
from worker.celery import app

INSTALL_STATES = ("Download", "ArtifactInstall", "ArtifactCommit")
# The burst: producers x deployments each, and duplicate run messages each (a larger burst for a
# manual run: ORCH_TEST_BURST="3,2,60" is producers,deployments,duplicates).
PRODUCERS, DEPLOYMENTS, DUPLICATES = (int(n) for n in os.getenv("ORCH_TEST_BURST", "3,2,60").split(","))
MESSAGES = int(os.getenv("ORCH_TEST_BURST_MESSAGES", "250"))  # per producer, transport test


def _assert_each_ran_once(appliance: Appliance, noop: NoopSystem, ids: list[int]) -> list[Deployment]:
    """Every deployment ended, and no install state of any ran twice (rows and interface calls)."""
    assert len(ids) == len(set(ids))
    ended = [appliance.wait_finished(pk, timeout=60) for pk in ids]
    for deployment in ended:
        states = Counter(deployment.steps.values_list("state", flat=True))
        assert all(states[state] <= 1 for state in INSTALL_STATES), (deployment.pk, states)
    calls = Counter(noop.calls())
    assert calls["ArtifactInstall"] == len(ids), calls
    assert calls["ArtifactCommit"] == sum(d.status == "succeeded" for d in ended), calls
    return ended


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_two_consumers_get_each_message_of_four_producers_once_beside_two_cpu_burners(
    appliance: Appliance,
) -> None:
    """The transport alone, at full speed: kombu's own lets a consumer read a message still
    being written and die of the JSONDecodeError (1 run in 2 here), or producers starting
    together read a half-made exchange table."""
    expected = [[f"producer-{p}", n] for p in range(4) for n in range(MESSAGES)]
    with cpu_burners(2):
        consumers = spawn_consumers(appliance, "stress", count=2, idle=5)
        producers = spawn_message_producers(appliance, "stress", count=4, messages=MESSAGES)
        producers_wait(producers, timeout=120)
        got = producers_wait(consumers, timeout=60)

    assert sorted(got) == sorted(expected)  # every message, none twice (within or across consumers)
    messages = appliance.system.datastore / "queue" / "messages"
    assert not list(messages.glob("*.msg"))
    assert not (messages / "rejected").exists()


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_it_runs_each_deployment_of_a_burst_once_beside_two_cpu_burners(appliance: Appliance) -> None:
    noop = noop_system(appliance)
    worker = appliance.start_worker()
    with cpu_burners(2):
        producers = spawn_producers(
            appliance, noop.manifest, count=PRODUCERS, deployments=DEPLOYMENTS, duplicates=DUPLICATES
        )
        ids = producers_wait(producers, timeout=300)
        ended = _assert_each_ran_once(appliance, noop, ids)

    assert len(ids) == PRODUCERS * DEPLOYMENTS
    assert all(d.status == "succeeded" for d in ended), [(d.pk, d.status, d.reason) for d in ended]
    assert worker.proc.poll() is None, worker.text()[-3000:]
    assert "Unrecoverable error" not in worker.text()
    assert "rejected message file" not in worker.text()  # every message arrived whole
    assert worker.name in [w.name for w in selectors.live_workers()]


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_it_sets_bad_files_aside_and_runs_the_next_message(appliance: Appliance) -> None:
    messages = appliance.system.datastore / "queue" / "messages"
    queue = app.conf.task_default_queue
    dispatch.deployments_recover_start()  # no worker yet: a real message to cut short
    (message,) = messages.glob(f"*.{queue}.msg")
    whole = message.read_bytes()
    message.unlink()
    bad = {
        f"0_empty.{queue}.msg": b"",
        f"0_truncated.{queue}.msg": whole[: len(whole) // 2],
        f"0_garbage.{queue}.msg": bytes(range(256)) * 4,
        f"0_not-a-message.{queue}.msg": b'{"body": "e30=", "headers": {}}',
    }
    worker = appliance.start_worker()
    for name, content in bad.items():  # written the naive way, while the worker polls
        (messages / name).write_bytes(content)

    deployment = dispatch.deployment_start(
        manifest_path=appliance.system.system / "manifest-v2.yaml", actor=Actor("user", "test")
    )
    assert appliance.wait_finished(deployment.pk).status == "succeeded"
    assert sorted(p.name for p in (messages / "rejected").iterdir()) == sorted(bad)
    for name in bad:
        assert f"rejected message file {name}" in worker.text()
    assert not list(messages.glob("*.msg"))
    assert worker.proc.poll() is None


@pytest.mark.parametrize("broker", ["filesystem", "redis"], indirect=True)
def test_it_ends_every_deployment_once_when_the_worker_is_killed_in_a_burst(appliance: Appliance) -> None:
    noop = noop_system(appliance, install_sleep=0.3)
    worker = appliance.spawn_worker(supervised=True)
    worker.wait_ready()
    producers = spawn_producers(appliance, noop.manifest, count=3, deployments=2, duplicates=30)

    def in_install() -> bool:  # the interface logs ArtifactInstall, then sleeps in it
        calls = Counter(noop.calls())
        installing = calls["ArtifactInstall"] > calls["ArtifactCommit"] + calls["ArtifactRollback"]
        return installing and calls["ArtifactCommit"] >= 2

    wait_for(in_install, 60, worker.text)
    killed = worker.kill_celery()  # SIGKILL mid-ArtifactInstall; the supervisor starts a new one
    wait_for(lambda: worker.count(" ready.") == 2, 60, worker.text)
    ids = producers_wait(producers, timeout=120)
    ended = _assert_each_ran_once(appliance, noop, ids)

    assert f"pid {killed} was killed by SIGKILL" in worker.text()
    statuses = Counter(d.status for d in ended)
    assert statuses["rolled_back"] == 1, statuses  # the interrupted one, by the crash rules
    assert statuses["succeeded"] == len(ids) - 1, statuses
    interrupted = next(d for d in ended if d.status == "rolled_back")
    assert "interrupted during ArtifactInstall" in interrupted.reason
    assert worker.proc.poll() is None
