#!/usr/bin/env python3
"""Dispatch through Celery workers (issue #6), every figure from one run per broker.

For Redis and for the embedded file-system broker: 200 short deployments (one component with a
no-op interface) started one after the other through `dispatch.deployment_start` and run by a
real `celery -A worker worker -P prefork -c 2`; and, in the same run against the same worker, 200
bare no-op Celery tasks. Prints deployments per second (start call -> finished seen in the row,
summed over the runs) and the ratio of the mean queue-to-start latency of a deployment (row
created -> claimed by the worker) to that of the no-op task (sent -> body starts). Every send
waits a random 0-250 ms first, so neither side is locked to the file-system broker's poll cycle.

A worker that dies, or a task that does not end within --timeout seconds, fails the bench
with the last lines of the worker's log instead of hanging.

Usage: .venv/bin/python bench/dispatch.py [--count 200] [--brokers redis,filesystem] [--timeout 60]
Redis: ORCH_BENCH_REDIS_URL (default redis://127.0.0.1:6379/9, flushed first).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

from worker.celery import app  # noqa: E402

NOOP_TASK = "bench.noop"
LOG_TAIL = 30
NOOP_INTERFACE = """#!/bin/sh
case "$1" in
  Identity) echo "id=$4" ;;
  Provides) echo "rootfs-image.noop.version=old" ;;
esac
exit 0
"""


@app.task(name=NOOP_TASK)
def noop(sent_at: float, path: str) -> None:
    """The baseline: a task that does nothing but note when its body started."""
    started = time.time()
    with open(path, "a") as fh:
        fh.write(f"{started - sent_at}\n")


# ----- parent: build a system per broker, measure in a child process (settings are per process) --


def build(root: Path) -> dict[str, str]:
    from updates.engine.artifact import write_artifact

    share = root / "share" / "interfaces" / "v1"
    share.mkdir(parents=True)
    (share / "noop").write_text(NOOP_INTERFACE)
    (share / "noop").chmod(0o755)
    store = root / "datastore"
    store.mkdir()
    (root / "payload.bin").write_bytes(b"x" * 1024)
    artifact = root / "noop.mender"
    write_artifact(
        artifact,
        kind="module-image",
        name="noop-new",
        device_types=["noop"],
        payload_type="noop",
        files=[root / "payload.bin"],
    )
    (store / "topology.yaml").write_text(
        "api_version: mender/v1\nkind: topology\nsystem_type: bench\ncomponents:\n"
        "  - component_type: noop\n    interface: noop\n    interface_args: [n1]\n"
    )
    (root / "manifest.yaml").write_text(
        "api_version: mender/v1\nkind: manifest\nname: bench\nsystem_types_compatible: [bench]\n"
        f"component_types:\n  noop:\n    artifact_path: {artifact}\n    update_strategy:\n      order: 1\n"
    )
    env = {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store),
        "MENDER_ORCHESTRATOR_TOPOLOGY_DIR": str(store),
        "MENDER_ORCHESTRATOR_DATA_DIR": str(root / "share"),
        "MENDER_ORCHESTRATOR_CONF_DIR": str(root / "conf"),
        "ORCH_REBOOT_COMMAND": "true",
        "ORCH_REBOOT_WAIT_SECONDS": "0",
    }
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    return env


def measure(broker: str, count: int, timeout: float, tmp: Path) -> dict[str, float]:
    env = build(tmp / broker)
    env.pop("CELERY_BROKER_URL", None)
    if broker == "redis":
        url = os.getenv("ORCH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
        import redis

        redis.Redis.from_url(url).flushdb()
        env["CELERY_BROKER_URL"] = url
    args = [sys.executable, __file__, "--child", str(tmp / broker), "--count", str(count)]
    args += ["--timeout", str(timeout)]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{broker}: the measuring process failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ----- child: one broker, one worker ---------------------------------------------------------------


def child(root: Path, count: int, timeout: float) -> None:
    import django

    django.setup()
    log = root / "worker.log"
    worker = start_worker(log)
    watch = Watch(worker, log, timeout)
    try:
        noop_latencies = run_noops(root / "noop-latencies.txt", count, watch)
        runs = [run_deployment(root / "manifest.yaml", watch) for _ in range(count)]
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    ids, walls = [pk for pk, _ in runs], [wall for _, wall in runs]
    print(json.dumps(deployment_figures(ids, sum(walls)) | {"noop_latency": statistics.mean(noop_latencies)}))


def _out_of_phase() -> None:
    """A random pause before each send: the file-system broker polls every 0.2 s, and sending
    right after the previous task ended would always land at the same point of its cycle."""
    time.sleep(random.uniform(0, 0.25))


class Watch:
    """Bounded waiting: fail with the worker log's last lines when the worker dies or a task
    does not end in time (kombu's file-system transport used to kill the worker, issue 15)."""

    def __init__(self, worker: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
        self.worker, self.log, self.timeout = worker, log, timeout

    def wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if self.worker.poll() is not None:
                self.fail(f"the worker died (exit status {self.worker.returncode}) while waiting for {what}")
            if time.monotonic() > deadline:
                self.fail(f"{what} did not end within {self.timeout:g} s")
            time.sleep(0.002)

    def fail(self, why: str) -> NoReturn:
        tail = self.log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        sys.exit(f"{why}; last lines of {self.log}:\n" + "\n".join(tail))


def start_worker(log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-P", "prefork", "-c", "2"]
    cmd += ["-l", "INFO", "--without-mingle", "--without-gossip", "-I", "bench.dispatch"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit(f"worker did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def run_noops(path: Path, count: int, watch: Watch) -> list[float]:
    from updates.services.dispatch import queue_folders_create

    queue_folders_create()

    def ran(n: int) -> Callable[[], bool]:
        return lambda: path.exists() and len(path.read_text().splitlines()) > n

    for n in range(count):
        _out_of_phase()
        app.send_task(NOOP_TASK, args=(time.time(), str(path)))
        watch.wait(ran(n), f"no-op task {n + 1}")
    return [float(line) for line in path.read_text().splitlines()]


def run_deployment(manifest: Path, watch: Watch) -> tuple[int, float]:
    """Start one deployment and wait for its end; returns its id and wall time (pause excluded)."""
    from updates.actors import Actor
    from updates.models import Deployment
    from updates.services import dispatch

    _out_of_phase()
    started = time.perf_counter()
    deployment = dispatch.deployment_start(manifest_path=manifest, actor=Actor("user", "bench"))
    done = ("succeeded", "rolled_back", "inconsistent", "rejected")

    def ended() -> bool:
        return bool(Deployment.objects.filter(pk=deployment.pk, status__in=done).exists())

    watch.wait(ended, f"deployment {deployment.pk}")
    return int(deployment.pk), time.perf_counter() - started


def deployment_figures(ids: list[int], wall: float) -> dict[str, float]:
    from updates.models import Deployment

    rows = Deployment.objects.filter(pk__in=ids)
    if any(d.status != "succeeded" for d in rows):
        sys.exit(
            f"a deployment failed: {[(d.pk, d.status, d.reason) for d in rows if d.status != 'succeeded']}"
        )
    latencies = [(d.started_at - d.created_at).total_seconds() for d in rows if d.started_at]
    return {"count": len(ids), "per_second": len(ids) / wall, "latency": statistics.mean(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--brokers", default="redis,filesystem")
    parser.add_argument("--timeout", type=float, default=60, help="seconds one task may take")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.count, args.timeout)
        return
    print(f"{args.count} deployments (one no-op component) per broker, prefork worker -c 2")
    print(f"{'broker':<11} {'deploy/s':>9} {'deploy q->start':>16} {'no-op q->start':>15} {'ratio':>6}")
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
        for broker in args.brokers.split(","):
            r = measure(broker, args.count, args.timeout, Path(tmp))
            print(
                f"{broker:<11} {r['per_second']:>9.2f} {r['latency'] * 1000:>13.1f} ms "
                f"{r['noop_latency'] * 1000:>12.1f} ms {r['latency'] / r['noop_latency']:>6.2f}"
            )


if __name__ == "__main__":
    main()
