"""Scale-out: two (or more) workers sharing one database and one Redis, behind the real HTTP API.

Still exactly one deployment at a time, the API answers while a worker dies, a surviving worker
continues a dead worker's deployment by the crash rules (worker/takeover.py), and a worker of
another host is left alone while that host beats (updates/liveness.py). Runs on SQLite in the
first pass of .ci/run and on PostgreSQL in the second (DATABASE_URL), like all of tests/worker.
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import connection

from tests.api.conftest import Personas, Web, personas, web
from tests.integration.conftest import CLI
from tests.worker.conftest import Appliance, NoopSystem, Worker, noop_system, wait_for
from updates.actors import Actor
from updates.engine.interface import QUERY_STATES
from updates.models import Deployment, Step
from updates.services import dispatch
from worker.celery import TASK_RECOVER, app
from worker.takeover import TAKEOVER_SECONDS

__all__ = ["personas", "web"]  # fixtures of the API tests

IN_PROGRESS = ("queued", "running", "stopped", "reboot_required")
FAR_HOST = "far-host.test"  # a simulated second machine (ORCH_TEST_HOST_ID, test-only)


def _noop_bundle(noop: NoopSystem) -> bytes:
    """The noop system's manifest and artifact as an uploadable bundle."""
    manifest = noop.manifest.read_text().replace(str(noop.root / "noop.mender"), "noop.mender")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = manifest.encode()
        info = tarfile.TarInfo("manifest.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(noop.root / "noop.mender", "noop.mender")
    return out.getvalue()


def _upload(web: Web, noop: NoopSystem, token: str) -> int:
    answer = web.upload("/bundles", "noop.tar.gz", _noop_bundle(noop), token=token)
    assert answer.status == 201 and answer.json()["status"] == "accepted", answer.body
    return int(answer.json()["id"])


def _two_workers(appliance: Appliance) -> list[Worker]:
    workers = [appliance.spawn_worker(), appliance.spawn_worker()]
    for worker in workers:
        worker.wait_ready()
    return workers


@contextmanager
def _sampling(sample: Callable[[], None], every: float = 0.02) -> Iterator[list[BaseException]]:
    """Run `sample` in a thread every `every` seconds while the block runs; errors collected."""
    done, errors = threading.Event(), []

    def loop() -> None:
        try:
            while not done.is_set():
                sample()
                time.sleep(every)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()  # this thread's own database connection

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield errors
    finally:
        done.set()
        thread.join(30)


def _spans(deployment_ids: list[int]) -> list[tuple[datetime, datetime, int]]:
    """(first step start, last step end, id) of each deployment's run, in start order.

    The run ends where the deployment gives up the in-progress slot (`finished_at`); the Provides
    it asks after that, to record what now runs, may overlap the next deployment's first queries
    (docs/workers.md, "Scale-out", limits): queries only, which this checks too.
    """
    spans = []
    for deployment in Deployment.objects.filter(pk__in=deployment_ids):
        assert deployment.finished_at is not None
        steps = list(Step.objects.filter(deployment=deployment))
        run = [s for s in steps if s.started_at <= deployment.finished_at]
        after = {s.state for s in steps if s.started_at > deployment.finished_at}
        assert run and after <= set(QUERY_STATES), (deployment.pk, after)
        ends = [s.ended_at for s in run if s.ended_at]
        spans.append((min(s.started_at for s in run), max(ends), deployment.pk))
    return sorted(spans)


def test_it_runs_one_deployment_at_a_time_from_a_burst_of_api_requests_on_two_workers(
    appliance: Appliance, web: Web, personas: Personas
) -> None:
    noop = noop_system(appliance, install_sleep=0.3)
    _two_workers(appliance)
    operator = personas.token("operator")
    bundle = _upload(web, noop, operator)
    accepted: list[int] = []
    refused: list[str] = []
    others: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    in_progress_seen: list[int] = []

    def request() -> None:
        deadline = time.monotonic() + 120
        while len(accepted) < 6 and time.monotonic() < deadline:
            answer = web.request("POST", "/deployments", token=operator, body={"bundle_id": bundle})
            with lock:
                if answer.status == 202:
                    accepted.append(int(answer.json()["id"]))
                elif answer.status == 409:
                    refused.append(answer.json()["error"]["code"])
                else:
                    others.append((answer.status, answer.body))
            time.sleep(0.05)

    def sample() -> None:
        rows = Deployment.objects.filter(status__in=IN_PROGRESS).count()
        in_progress_seen.append(rows)
        assert rows <= 1, f"{rows} deployments in progress at once"

    with _sampling(sample) as errors:
        threads = [threading.Thread(target=request) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(150)
    assert not errors and not others, (errors, others)
    assert len(accepted) >= 6 and refused and set(refused) == {"busy"}, (accepted, refused)
    assert 1 in in_progress_seen  # the sampler did see the deployments run

    finished = [appliance.wait_finished(pk) for pk in accepted]
    # The Provides asked after the end are steps too: let the last one answer.
    open_steps = Step.objects.filter(deployment_id__in=accepted, ended_at__isnull=True)
    wait_for(lambda: not open_steps.exists(), 30, appliance._logs)
    assert {d.status for d in finished} == {"succeeded"}, [(d.pk, d.status, d.reason) for d in finished]
    for pk in accepted:  # every accepted request ended once: one pass through each install state
        states = list(Step.objects.filter(deployment_id=pk).values_list("state", flat=True))
        assert states.count("ArtifactInstall") == 1 and states.count("ArtifactCommit") == 1, (pk, states)
    assert noop.calls().count("ArtifactInstall") == len(accepted)
    spans = _spans(accepted)
    for (_, end, before), (start, _, after) in itertools.pairwise(spans):
        assert end <= start, f"deployment {after} started a step before {before} ended its last"


@contextmanager
def _api_polled(web: Web, token: str) -> Iterator[list[tuple[str, int]]]:
    """GET /health and /system all along the block: (path, status) of every answer."""
    answers: list[tuple[str, int]] = []

    def poll() -> None:
        for path in ("/health", "/system"):
            answers.append((path, web.request("GET", path, token=token).status))

    with _sampling(poll) as errors:
        yield answers
    assert not errors, errors


def _owner_worker(workers: list[Worker], deployment: Deployment) -> Worker:
    pid = int(deployment.owner.rpartition("/")[2].split(":")[1])
    return next(w for w in workers if pid in w.pool_pids())


def _wait_in_install(appliance: Appliance, noop: NoopSystem, deployment_id: int) -> Deployment:
    wait_for(lambda: "ArtifactInstall" in noop.calls(), 60, lambda: appliance._logs())
    deployment = Deployment.objects.get(pk=deployment_id)
    assert deployment.status == "running"
    return deployment


def _assert_rolled_back_once(appliance: Appliance, noop: NoopSystem, deployment_id: int) -> Deployment:
    deployment = appliance.wait_finished(deployment_id)
    assert deployment.status == "rolled_back", deployment.reason
    assert "interrupted during ArtifactInstall" in deployment.reason
    calls = noop.calls()
    assert calls.count("ArtifactInstall") == 1 and calls.count("Download") == 1, calls
    assert "ArtifactCommit" not in calls and "ArtifactRollback" in calls
    return deployment


def test_it_answers_the_api_and_a_surviving_worker_continues_when_a_worker_is_killed(
    appliance: Appliance, web: Web, personas: Personas
) -> None:
    noop = noop_system(appliance, install_sleep=60)
    workers = _two_workers(appliance)
    operator, viewer = personas.token("operator"), personas.token("viewer")
    started = web.request(
        "POST", "/deployments", token=operator, body={"bundle_id": _upload(web, noop, operator)}
    )
    assert started.status == 202, started.body
    deployment = _wait_in_install(appliance, noop, int(started.json()["id"]))
    dead = _owner_worker(workers, deployment)
    survivor = next(w for w in workers if w is not dead)

    with _api_polled(web, viewer) as answers:
        wait_for(lambda: len(answers) >= 4, 30, web.text)
        dead.kill()
        (noop.root / "install-sleep").unlink()
        _assert_rolled_back_once(appliance, noop, deployment.pk)
        seen = len(answers)
        wait_for(lambda: len(answers) >= seen + 4, 30, web.text)

    assert answers and all(status == 200 for _, status in answers), answers
    assert survivor.proc.poll() is None and dead.proc.poll() is not None
    wait_for(lambda: "resumed after a crash: rolled_back" in survivor.text(), 30, survivor.text)
    health = web.request("GET", "/health").json()
    assert health["checks"]["worker"]["state"] == "up"


def test_it_leaves_another_hosts_deployment_alone_until_that_host_stops_beating(
    appliance: Appliance,
) -> None:
    noop = noop_system(appliance, install_sleep=60)
    far = appliance.spawn_worker(env={"ORCH_TEST_HOST_ID": FAR_HOST})
    far.wait_ready()
    deployment = dispatch.deployment_start(manifest_path=noop.manifest, actor=Actor("user", "test"))
    deployment = _wait_in_install(appliance, noop, deployment.pk)
    assert deployment.owner.startswith(f"{FAR_HOST}/")

    near = appliance.start_worker()  # "on this host": its start sends the recovery
    left_alone = f"deployment {deployment.pk} (running) left alone"
    wait_for(lambda: left_alone in near.text() + far.text(), 30, appliance._logs)  # either may run it
    time.sleep(3 * TAKEOVER_SECONDS)  # a few takeover ticks of the near worker
    assert Deployment.objects.get(pk=deployment.pk).owner == deployment.owner
    assert "resuming it" not in near.text()

    far.kill()  # its last beat stays behind in the data store, and ages
    (noop.root / "install-sleep").unlink()
    assert Deployment.objects.get(pk=deployment.pk).owner == deployment.owner  # not yet: still fresh
    finished = _assert_rolled_back_once(appliance, noop, deployment.pk)
    wait_for(lambda: "resumed after a crash: rolled_back" in near.text(), 30, near.text)
    assert finished.owner == ""


def test_it_leaves_a_cli_run_of_another_host_alone_while_that_run_beats(appliance: Appliance) -> None:
    """The boot-time `resume --interrupted` runs before its host's worker starts: the command
    line beats for its host itself, or another host's worker would take its deployment."""
    noop = noop_system(appliance, install_sleep=60)
    log = open(appliance.system.root / "cli.log", "wb")  # noqa: SIM115 - closed below
    cli = subprocess.Popen(
        [CLI, "install", str(noop.manifest)],
        env={**appliance.env, "ORCH_TEST_HOST_ID": FAR_HOST},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: "ArtifactInstall" in noop.calls(), 60, lambda: log.name)
    deployment = Deployment.objects.get(status="running")
    assert deployment.owner.startswith(f"{FAR_HOST}/")

    near = appliance.start_worker()
    wait_for(lambda: f"deployment {deployment.pk} (running) left alone" in near.text(), 30, near.text)
    time.sleep(3 * TAKEOVER_SECONDS)
    assert Deployment.objects.get(pk=deployment.pk).owner == deployment.owner

    cli.kill()  # only the CLI: its interface call lives on, the takeover ends it first
    cli.wait()
    log.close()
    (noop.root / "install-sleep").unlink()
    _assert_rolled_back_once(appliance, noop, deployment.pk)
    wait_for(lambda: "resumed after a crash: rolled_back" in near.text(), 30, near.text)


def _far_host_beats(appliance: Appliance) -> None:
    """A beat of the simulated far host's worker, as its own heartbeat step would write it."""
    beat = {"name": f"far@{FAR_HOST}", "hostname": FAR_HOST, "pid": 1, "broker": "redis"}
    beat |= {"started_at": time.time(), "beat_at": time.time(), "owner": f"{FAR_HOST}/boot:1:1"}
    path = appliance.system.datastore / "workers" / f"far@{FAR_HOST}.json"
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(beat))
    tmp.replace(path)


def test_it_takes_over_when_the_owners_own_host_found_it_dead(appliance: Appliance) -> None:
    """The far host's worker sees its own process gone while the far host still beats; the
    recovery it sends carries the dead token, and a worker here believes it."""
    noop = noop_system(appliance, install_sleep=60)
    with _sampling(lambda: _far_host_beats(appliance), every=0.5) as errors:
        cli = subprocess.Popen(
            [CLI, "install", str(noop.manifest)],
            env={**appliance.env, "ORCH_TEST_HOST_ID": FAR_HOST},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: "ArtifactInstall" in noop.calls(), 60, lambda: "no ArtifactInstall")
        cli.kill()
        cli.wait()
        deployment = Deployment.objects.get(status="running")
        near = appliance.start_worker()
        wait_for(lambda: f"deployment {deployment.pk} (running) left alone" in near.text(), 30, near.text)

        app.send_task(TASK_RECOVER, args=[deployment.owner])  # what the far worker's timer sends
        (noop.root / "install-sleep").unlink()
        _assert_rolled_back_once(appliance, noop, deployment.pk)
        wait_for(lambda: "resumed after a crash: rolled_back" in near.text(), 30, near.text)
    assert not errors, errors
