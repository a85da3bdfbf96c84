"""Real parts for the worker tests: a real broker (Redis, or the file-system transport), real
`celery -A worker worker -P prefork` subprocesses, the demo system's real interface scripts, and
a file-backed test database (SQLite, or PostgreSQL in the second pass) that the worker shares.

Each xdist process gets its own Redis DB number (ORCH_TEST_REDIS_DB_BASE + n), flushed per test.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.integration.conftest import DemoSystem, build_demo, demo, migrated_db
from updates.engine.artifact import write_artifact
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
    name: str = ""  # the Celery node name (-n)
    supervised: bool = False  # proc is worker.supervise, the celery worker its child

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

    def celery_pid(self) -> int:
        """The celery main process (the supervisor's child when supervised)."""
        if not self.supervised:
            return self.proc.pid
        children = self.pool_pids()
        assert len(children) == 1, f"the supervisor runs {children}:\n{self.text()}"
        return children[0]

    def kill_celery(self) -> int:
        """SIGKILL the celery worker and its tree, not its supervisor; returns the pid killed."""
        pid = self.celery_pid()
        _kill_tree(pid)
        return pid

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

    def spawn_worker(
        self,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        supervised: bool = False,
        quiet: bool = False,
    ) -> Worker:
        """Start a worker without waiting for it (it may refuse to start); `env` adds variables.
        `supervised`: under `python -m worker.supervise`, as bin/run starts it (short back-off).
        `quiet`: without Celery's start-up banner (`celery -q`), so it prints log lines only."""
        log = self.system.root / f"worker-{len(self.workers)}.log"
        name = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        cmd = [sys.executable, "-m", "celery", "-A", "worker", *(["-q"] if quiet else []), "worker"]
        cmd += ["-P", "prefork"]
        cmd += ["-c", str(concurrency), "-l", "INFO", "-n", name]
        cmd += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
        if supervised:
            cmd = [sys.executable, "-m", "worker.supervise", "--backoff", "0.5", "--", *cmd]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(proc, log, name, supervised)
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
        app.conf.broker_url = url  # type: ignore[misc]  # celery-types: read-only, Celery: settable
        app.conf.broker_transport = None
        app.conf.broker_transport_options = {"visibility_timeout": 86400}
        return {"CELERY_BROKER_URL": url}
    queue = datastore / "queue"
    app.conf.broker_url = "filesystem://localhost//"  # type: ignore[misc]  # as above
    app.conf.broker_transport = settings.FILESYSTEM_TRANSPORT  # the worker's, from the same settings
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


def producer_broker(url: str) -> None:
    """Send this process's messages to another Redis (a private one a test stops and starts)."""
    _forget_broker_connections()
    app.conf.broker_url = url  # type: ignore[misc]  # celery-types: read-only, Celery: settable


def _forget_broker_connections() -> None:
    # Celery has no public "switch brokers" call; this is what it does itself after a fork.
    kombu.pools.reset()
    app._after_fork()  # type: ignore[attr-defined]  # private, not in celery-types


# ----- bursts: a one-component system with a no-op interface, producer processes, CPU burners ---

NOOP_INTERFACE = """#!/bin/sh
# A no-op update interface: every call appends its state to calls.log; ArtifactInstall sleeps
# for the seconds in install-sleep when that file exists.
echo "$1" >> "{root}/calls.log"
case "$1" in
  Identity) echo "id=$4" ;;
  Provides) echo "rootfs-image.noop.version=old" ;;
  SupportsRollback) echo "Yes" ;;
  ArtifactInstall) [ -f "{root}/install-sleep" ] && sleep "$(cat "{root}/install-sleep")" ;;
esac
exit 0
"""


@dataclass
class NoopSystem:
    """The appliance's topology swapped for one `noop` component that is never up to date, so
    the same manifest deploys again and again, each time through every install state."""

    root: Path
    manifest: Path

    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().split() if log.exists() else []


def noop_system(appliance: Appliance, install_sleep: float = 0) -> NoopSystem:
    root = appliance.system.root / "noop"
    root.mkdir()
    interface = appliance.system.root / "share" / "interfaces" / "v1" / "noop"
    interface.write_text(NOOP_INTERFACE.format(root=root))
    interface.chmod(0o755)
    if install_sleep:
        (root / "install-sleep").write_text(str(install_sleep))
    (root / "payload.bin").write_bytes(b"x" * 1024)
    artifact = root / "noop.mender"
    write_artifact(
        artifact, kind="module-image", name="noop-new", device_types=["noop"], payload_type="noop",
        files=[root / "payload.bin"],
    )  # fmt: skip
    (appliance.system.datastore / "topology.yaml").write_text(
        "api_version: mender/v1\nkind: topology\nsystem_type: noop\ncomponents:\n"
        "  - component_type: noop\n    interface: noop\n    interface_args: [n1]\n"
    )
    manifest = root / "manifest.yaml"
    manifest.write_text(
        "api_version: mender/v1\nkind: manifest\nname: noop\nsystem_types_compatible: [noop]\n"
        f"component_types:\n  noop:\n    artifact_path: {artifact}\n    update_strategy:\n      order: 1\n"
    )
    return NoopSystem(root, manifest)


@contextmanager
def cpu_burners(count: int = 2) -> Iterator[None]:
    """`count` processes spinning on the CPU beside the worker: the load that made kombu's
    file-system transport deliver a half-written message (issue 15)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def spawn_producers(
    appliance: Appliance, manifest: Path, *, count: int, deployments: int, duplicates: int
) -> list[subprocess.Popen[str]]:
    """`count` processes (tests/worker/producer.py) each starting `deployments` deployments, and
    sending `duplicates` repeated run messages of the deployment in progress meanwhile."""
    args = ["deployments", str(manifest), "--deployments", str(deployments), "--duplicates", str(duplicates)]
    return [_producer(appliance, [*args, "--name", f"producer-{n}"]) for n in range(count)]


def spawn_message_producers(
    appliance: Appliance, queue: str, *, count: int, messages: int
) -> list[subprocess.Popen[str]]:
    """`count` processes each publishing `messages` bare messages to `queue` as fast as they can."""
    args = ["messages", queue, "--count", str(messages)]
    return [_producer(appliance, [*args, "--name", f"producer-{n}"]) for n in range(count)]


def spawn_consumers(
    appliance: Appliance, queue: str, *, count: int, idle: float
) -> list[subprocess.Popen[str]]:
    """`count` processes taking messages from `queue` until none came for `idle` seconds."""
    args = ["consume", queue, "--idle", str(idle)]
    return [_producer(appliance, [*args, "--name", f"consumer-{n}"]) for n in range(count)]


def _producer(appliance: Appliance, args: list[str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.worker.producer", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=appliance.env, stdout=subprocess.PIPE, text=True)


def producers_wait(producers: list[subprocess.Popen[str]], timeout: float) -> list[Any]:
    """What the producers (or consumers) printed as their last line, JSON lists, joined."""
    printed: list[Any] = []
    for producer in producers:
        out, _ = producer.communicate(timeout=timeout)
        assert producer.returncode == 0, f"{producer.args!r} failed (status {producer.returncode}): {out}"
        printed += json.loads(out.strip().splitlines()[-1]) if out.strip() else []
    return printed
