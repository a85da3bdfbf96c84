"""Real parts for the worker tests: a real broker (Redis, or the file-system transport), real
`celery -A worker worker -P prefork` subprocesses, the demo system's real interface scripts, and
a file-backed test database (SQLite, or PostgreSQL in the second pass) that the worker shares.

Each xdist process gets its own Redis DB number (ORCH_TEST_REDIS_DB_BASE + n), flushed per test.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
import redis
from django.db import connection

from tests.integration.conftest import DemoSystem, build_demo, demo, migrated_db
from updates.models import Deployment
from worker.celery import app

__all__ = ["demo", "migrated_db"]  # fixtures shared with the integration tests

ROOT = Path(__file__).resolve().parents[2]
REDIS_BASE = os.getenv("ORCH_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PR_SET_CHILD_SUBREAPER = 36
FINAL = ("succeeded", "rolled_back", "inconsistent", "rejected", "stopped", "reboot_required")


def _redis_db() -> int:
    worker = os.getenv("PYTEST_XDIST_WORKER", "gw0")
    return int(os.getenv("ORCH_TEST_REDIS_DB_BASE", "10")) + int(worker.removeprefix("gw") or 0)


@dataclass
class Worker:
    """One `celery worker` subprocess (its own session, so a kill takes the whole tree)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: " ready." in self.text(), timeout, lambda: f"worker not ready:\n{self.text()}")

    def pool_pids(self) -> list[int]:
        return _children(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (interface calls too): a power cut."""
        _kill_tree(self.proc.pid)
        self.proc.wait(10)

    def kill_pool_process(self) -> int:
        """SIGKILL one prefork child (and the interface call it runs): an OOM kill, say."""
        busy = next(pid for pid in self.pool_pids() if _children(pid))
        _kill_tree(busy)
        return busy

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.kill()

    def count(self, text: str) -> int:
        return self.text().count(text)


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []  # it exited while we walked the tree
    for task in tasks:
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _kill_tree(pid: int) -> None:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    for each in tree:
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # A zombie still has its /proc entry, so it would pass for a live owner: reap the orphans,
    # which come to us (a subreaper, see below) as init would take them on a real machine.
    for each in tree:
        try:
            os.waitpid(each, 0)
        except ChildProcessError:
            pass


def _become_subreaper() -> None:
    """The pid 1 of some containers never reaps orphans; make killed trees come to us instead."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def wait_for(check: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(message())
        time.sleep(0.05)


def database_url() -> str:
    """The test database as a URL, so the worker subprocess opens the very same one."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Appliance:
    """The demo system run by workers: the test process enqueues, worker subprocesses run."""

    system: DemoSystem
    broker: str
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2) -> Worker:
        worker = self.spawn_worker(concurrency)
        worker.wait_ready()
        return worker

    def spawn_worker(self, concurrency: int = 2, env: dict[str, str] | None = None) -> Worker:
        """Start a worker without waiting for it (it may refuse to start); `env` adds variables."""
        log = self.system.root / f"worker-{len(self.workers)}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-P", "prefork"]
        cmd += ["-c", str(concurrency), "-l", "INFO", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"]
        cmd += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def wait_finished(self, deployment_id: int, timeout: float = 60) -> Deployment:
        def finished() -> bool:
            return Deployment.objects.get(pk=deployment_id).status in FINAL

        wait_for(finished, timeout, self._logs)
        return Deployment.objects.get(pk=deployment_id)

    def _logs(self) -> str:
        return "timed out; worker logs:\n" + "\n".join(w.text()[-4000:] for w in self.workers)


def _configure_producer(broker: str, datastore: Path) -> dict[str, str]:
    """Point this process's Celery app at the test broker; returns the worker's env for it."""
    _forget_broker_connections()
    if broker == "redis":
        url = f"{REDIS_BASE}/{_redis_db()}"
        redis.Redis.from_url(url).flushdb()
        app.conf.broker_url = url
        app.conf.broker_transport_options = {"visibility_timeout": 86400}
        return {"CELERY_BROKER_URL": url}
    queue = datastore / "queue"
    app.conf.broker_url = "filesystem://localhost//"
    app.conf.broker_transport_options = {
        "data_folder_in": str(queue / "messages"),
        "data_folder_out": str(queue / "messages"),
        "control_folder": str(queue / "control"),
        "polling_interval": 0.2,
    }
    return {}


@pytest.fixture(params=["redis"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def appliance(
    broker: str, tmp_path: Path, migrated_db: Path, transactional_db: None, settings: Any
) -> Iterator[Appliance]:
    _become_subreaper()
    system = build_demo(tmp_path / "appliance", migrated_db)
    settings.DATASTORE_DIR = system.datastore
    settings.TOPOLOGY_DIR = system.datastore
    settings.DATA_DIR = system.root / "share"
    settings.CONF_DIR = system.root / "conf"
    settings.REBOOT_COMMAND = system.env["ORCH_REBOOT_COMMAND"]
    env = {**system.env, **_configure_producer(broker, system.datastore)}
    if broker == "filesystem":
        env.pop("CELERY_BROKER_URL", None)  # the default: <datastore>/queue/
    env["DATABASE_URL"] = database_url()
    env["DJANGO_SETTINGS_MODULE"] = "orchestrator_site.settings"
    appliance = Appliance(system=system, broker=broker, env=env)
    yield appliance
    for worker in appliance.workers:
        worker.stop()
    _forget_broker_connections()


def _forget_broker_connections() -> None:
    # Celery has no public "switch brokers" call; this is what it does itself after a fork.
    kombu.pools.reset()
    app._after_fork()
