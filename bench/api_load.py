#!/usr/bin/env python3
"""REST API under load (issue #9), every figure from one run against one gunicorn server.

A fresh data store with 10 000 deployments (each with its steps) and three components; gunicorn
(gthread, as `bin/run` starts it) on a loopback port; 20 concurrent clients with keep-alive
connections and a bearer token. For each endpoint — GET /deployments?page=N (random page of 50),
GET /deployments/{id} (random id, groups -> components -> steps), GET /system — and for a trivial
Django view served by the same server through the same middleware (the baseline), the clients
send requests for a fixed time. Prints p50/p99 latency and requests per second per endpoint, and
the ratio of each endpoint's p50 to the trivial view's p50 (target: <= 3).

Usage: .venv/bin/python bench/api_load.py [--deployments 10000] [--steps 8] [--clients 20]
       [--seconds 8] [--workers 2] [--threads 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def populate(deployments: int, steps: int) -> str:
    """Rows straight through the ORM in bulk (a run would take hours); returns a viewer token."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from accounts import services
    from accounts.models import Role
    from devices.models import Component, System
    from updates.actors import SYSTEM, Actor
    from updates.models import Deployment, Manifest, Step, StepEvent

    call_command("migrate", verbosity=0)
    System.objects.create(pk=1, system_type="system-core")
    for key in ("gateway.G13", "rtos.R998", "rtos.R456"):
        ctype, _, cid = key.partition(".")
        Component.objects.create(
            key=key,
            component_type=ctype,
            component_id=cid,
            interface=ctype,
            provides={"v": "1"},
            version="v1",
        )
    manifest = Manifest.objects.create(
        name="system-core-v2", form="current", sha256="0" * 64, raw="x", source_path="/m"
    )
    plan = {
        "groups": [[10, ["gateway.G13"]], [20, ["rtos.R998", "rtos.R456"]]],
        "components": [
            {
                "key": k,
                "component_type": k.split(".")[0],
                "component_id": k.split(".")[1],
                "action": "install",
                "current": "v1",
                "target": "v2",
            }
            for k in ("gateway.G13", "rtos.R998", "rtos.R456")
        ],
    }
    now = timezone.now()
    batch = 1000
    for start in range(0, deployments, batch):
        rows = Deployment.objects.bulk_create(
            Deployment(
                manifest=manifest,
                status="succeeded",
                slot=None,
                plan=plan,
                actor=Actor("user", "bench").as_json(),
                started_at=now,
                finished_at=now + timedelta(seconds=9),
            )
            for _ in range(min(batch, deployments - start))
        )
        made = Step.objects.bulk_create(
            Step(
                deployment=d,
                component=("gateway.G13", "rtos.R998", "rtos.R456")[i % 3],
                state=f"State{i}",
                argv=["/x", f"State{i}"],
                started_at=now,
                ended_at=now,
                exit_code=0,
                stdout="ok\n" * 20,
            )
            for d in rows
            for i in range(steps)
        )
        StepEvent.objects.bulk_create(
            StepEvent(deployment_id=s.deployment_id, step=s, kind="finished") for s in made
        )
    services.user_create(username="bench", role=Role.VIEWER, password="bench-password-1", actor=SYSTEM)
    return services.token_create(username="bench", role=Role.VIEWER, name="load", actor=SYSTEM).secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(env: dict[str, str], port: int, workers: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "orchestrator_site.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--no-control-socket",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not start:\n{log.read_text()}")


def load(
    port: int, token: str, path_of: Callable[[random.Random], str], clients: int, seconds: float
) -> tuple[list[float], float]:
    """`clients` threads, each on its own keep-alive connection, for `seconds`: (latencies, rps)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < stop:
            began = time.perf_counter()
            conn.request("GET", path_of(rng), headers=headers)
            response = conn.getresponse()
            response.read()
            latencies[n].append(time.perf_counter() - began)
            if response.status != 200:
                errors.append(f"{response.status}")
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. HTTP {errors[0]}")
    flat = [x for per in latencies for x in per]
    return flat, len(flat) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    store = Path(tempfile.mkdtemp(prefix="orch-bench-api-"))
    env = {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "bench.api_load_settings",
    }
    env.pop("DATABASE_URL", None)
    os.environ.update({k: env[k] for k in ("MENDER_ORCHESTRATOR_DATASTORE_DIR", "DJANGO_SETTINGS_MODULE")})
    os.environ.pop("DATABASE_URL", None)
    began = time.monotonic()
    token = populate(args.deployments, args.steps)
    print(
        f"database: {args.deployments} deployments x {args.steps} steps in {time.monotonic() - began:.1f} s ({store})"
    )

    port = free_port()
    server = serve(env, port, args.workers, args.threads, store / "gunicorn.log")
    pages = max(1, args.deployments // 50)
    targets: dict[str, Callable[[random.Random], str]] = {
        "trivial view (baseline)": lambda r: "/bench/trivial",
        "GET /deployments?page=N": lambda r: f"/api/v1/deployments?page={r.randint(1, pages)}",
        "GET /deployments/{id}": lambda r: f"/api/v1/deployments/{r.randint(1, args.deployments)}",
        "GET /system": lambda r: "/api/v1/system",
    }
    print(
        f"gunicorn gthread: {args.workers} workers x {args.threads} threads; {args.clients} clients, "
        f"{args.seconds:.0f} s per endpoint"
    )
    try:
        load(port, token, targets["GET /system"], args.clients, 1)  # warm up: imports, connections
        results = {
            name: load(port, token, path, args.clients, args.seconds) for name, path in targets.items()
        }
    finally:
        server.terminate()
        server.wait(10)
    base = statistics.median(results["trivial view (baseline)"][0])
    print(f"{'endpoint':<26} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'p50 ratio':>10}")
    for name, (latencies, rps) in results.items():
        p50 = statistics.median(latencies)
        p99 = statistics.quantiles(latencies, n=100)[98]
        print(
            f"{name:<26} {len(latencies):>8} {p50 * 1000:>8.2f} {p99 * 1000:>8.2f} {rps:>8.0f} {p50 / base:>10.2f}"
        )
    worst = max(statistics.median(v[0]) / base for k, v in results.items() if "baseline" not in k)
    print(f"worst p50 ratio to the trivial view: {worst:.2f} (target <= 3)")


if __name__ == "__main__":
    main()
