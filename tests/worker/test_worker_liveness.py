"""A worker stays running or is restarted (issue 15): the supervisor `bin/run` starts it under,
and the heartbeat `/api/v1/health` reads (`selectors.live_workers`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.worker.conftest import ROOT, Appliance, producer_broker, wait_for
from updates import selectors
from updates.actors import Actor
from updates.liveness import HEARTBEAT_SECONDS, heartbeats_dir
from updates.services import dispatch


def _live_names(within_seconds: float = 10) -> list[str]:
    return [w.name for w in selectors.live_workers(within_seconds=within_seconds)]


@pytest.mark.parametrize("broker", ["redis", "filesystem"], indirect=True)
def test_a_running_worker_is_live_until_it_is_killed(appliance: Appliance) -> None:
    assert _live_names() == []
    worker = appliance.start_worker()
    wait_for(lambda: _live_names() == [worker.name], 10, worker.text)
    (beat,) = selectors.live_workers()
    assert beat.broker == appliance.broker
    assert beat.pid == worker.proc.pid

    first = beat.beat_at
    wait_for(lambda: selectors.live_workers()[0].beat_at > first, 3 * HEARTBEAT_SECONDS, worker.text)
    worker.kill()  # SIGKILL: no goodbye; its process is gone, so it drops out at once
    assert _live_names() == []


def test_a_frozen_worker_drops_out_after_the_window_and_a_stopped_one_at_once(appliance: Appliance) -> None:
    frozen, stopped = appliance.start_worker(), appliance.start_worker()
    wait_for(lambda: sorted(_live_names()) == sorted([frozen.name, stopped.name]), 10, frozen.text)

    os.kill(frozen.proc.pid, signal.SIGSTOP)  # alive, but it answers nothing any more
    try:
        window = 2 * HEARTBEAT_SECONDS
        time.sleep(window + HEARTBEAT_SECONDS)
        assert _live_names(window) == [stopped.name]
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)

    os.kill(stopped.proc.pid, signal.SIGTERM)  # a warm shutdown removes its heartbeat
    assert stopped.proc.wait(30) == 0, stopped.text()
    assert not (heartbeats_dir() / f"{stopped.name}.json").exists()
    wait_for(lambda: _live_names() == [frozen.name], 10, frozen.text)


def _redis_server(port: int, root: Path) -> subprocess.Popen[bytes]:
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*cmd, "--dir", str(root)], stdout=subprocess.DEVNULL)
    wait_for(lambda: _answers(port), 10, lambda: f"redis-server on port {port} did not start")
    return server


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_worker_waits_out_a_lost_redis_and_takes_work_when_it_is_back(
    appliance: Appliance, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a free port for a Redis of our own, which we stop
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    server = _redis_server(port, tmp_path)
    producer_broker(url)
    # Supervised, as bin/run starts it: Celery 5.7 itself keeps retrying a lost Redis, but when the
    # connection drops while a message is unacknowledged, kombu's restore of it on the dead channel
    # raises AttributeError and the worker process exits ("Unrecoverable error"); the supervisor
    # then restarts it, and the restarted worker waits for Redis in the same way.
    worker = appliance.spawn_worker(env={"CELERY_BROKER_URL": url}, supervised=True)
    try:
        worker.wait_ready()
        server.kill()
        server.wait()
        # 90 s: after kombu's exit the supervisor restarts the worker, slow on a loaded machine
        wait_for(lambda: "Cannot connect to" in worker.text(), 90, worker.text)
        time.sleep(3)  # several retries
        assert worker.proc.poll() is None, worker.text()

        server = _redis_server(port, tmp_path)  # back, and empty
        wait_for(lambda: worker.count("Connected to") == 2, 60, worker.text)
        deployment = dispatch.deployment_start(
            manifest_path=appliance.system.system / "manifest-v2.yaml", actor=Actor("user", "test")
        )
        assert appliance.wait_finished(deployment.pk).status == "succeeded"
        assert worker.proc.poll() is None
        wait_for(lambda: worker.name in _live_names(), 10, worker.text)
    finally:
        server.kill()
        server.wait()


def test_the_supervisor_restarts_a_killed_worker_and_stops_it_on_sigterm(appliance: Appliance) -> None:
    worker = appliance.spawn_worker(supervised=True)
    worker.wait_ready()
    first = worker.kill_celery()
    wait_for(lambda: worker.count(" ready.") == 2, 60, worker.text)
    second = worker.kill_celery()  # again at once: the back-off doubles
    wait_for(lambda: worker.count(" ready.") == 3, 60, worker.text)
    wait_for(lambda: worker.name in _live_names(), 10, worker.text)

    assert f"pid {first} was killed by SIGKILL" in worker.text()
    assert f"pid {second} was killed by SIGKILL" in worker.text()
    assert "restarting in 0.5 s" in worker.text()
    assert "restarting in 1 s" in worker.text()
    # Its start-up recovery task done first: a SIGTERM landing while that task was being received
    # once left Celery (Redis) in its warm shutdown until a second SIGTERM.
    wait_for(lambda: "succeeded in" in worker.text().rsplit(" ready.", 1)[1], 30, worker.text)
    celery = worker.celery_pid()
    os.kill(worker.proc.pid, signal.SIGTERM)  # what `kill "$(cat var/run/worker.pid)"` does
    assert worker.proc.wait(30) == 0, worker.text()
    assert f"SIGTERM: passed to pid {celery}" in worker.text()
    assert not Path(f"/proc/{celery}").exists()
    assert _live_names() == []


def test_the_supervisor_backs_off_a_command_that_keeps_failing(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "run" / "worker.pid", tmp_path / "supervise.log"
    cmd = [sys.executable, "-m", "worker.supervise", "--pidfile", str(pidfile), "--backoff", "0.2"]
    cmd += ["--max-backoff", "0.8", "--", sys.executable, "-c", "raise SystemExit(3)"]
    with open(log, "w") as out:
        supervisor = subprocess.Popen(cmd, cwd=ROOT, stderr=out)
    try:
        wait_for(lambda: log.read_text().count("restarting in") >= 4, 30, log.read_text)
        assert pidfile.read_text().strip() == str(supervisor.pid)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(10)

    text = log.read_text()
    waits = [line.rsplit("restarting in ", 1)[1] for line in text.splitlines() if "restarting in" in line]
    assert waits[:4] == ["0.2 s", "0.4 s", "0.8 s", "0.8 s"], text  # doubled, then capped
    assert text.count("exited with status 3") == len(waits), text
    assert supervisor.returncode == 0
    assert not pidfile.exists()
