#!/usr/bin/env python3
"""REST API and pages under load (issues #9, #25), against gunicorn started as `bin/run` starts it.

A fresh data store with N deployments (each with its steps; `--deployments 10000 100000` measures
each size in turn), rows written in bulk (a real run would take hours); gunicorn on a loopback port
with `bin/run`'s configuration (orchestrator_site/gunicorn_conf.py, the ASGI application, the same
worker count); 20 concurrent clients on keep-alive connections (a bearer token for the API, a
signed-in session for the pages).

A machine this small swings 2x from run to run, so no figure comes from one run: for each route,
the baseline (a trivial Django view served by the same server through the same middleware) and
the route are loaded in turn, A B A B ..., and the figure is the median of the pairwise p50
ratios, printed with their spread (lowest..highest). Goal: <= 3 for every route; at the larger
size, no route's ratio more than 1.3x its ratio at the smaller one.

`--streams 200`: the same pairing for `GET /api/v1/system` without (A) and with (B) 200 event
streams held open on a running deployment; goal: B/A <= 1.5.

Usage: .venv/bin/python bench/api_load.py [--deployments 10000 [100000]] [--steps 8] [--clients 20]
       [--seconds 2] [--rounds 5] [--workers 2] [--streams 200] [--port PORT]
       [--only ROUTE-SUBSTRING [--only ...]]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COMPONENTS = ("gateway.G13", "rtos.R998", "rtos.R456")
PASSWORD = "bench-password-1"


def populate(deployments: int, steps: int) -> tuple[str, int]:
    """Rows straight through the ORM in bulk; returns a viewer token and a running deployment's id."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from accounts import services
    from accounts.models import Role
    from devices.models import Component, System
    from updates.actors import SYSTEM, Actor
    from updates.models import Bundle, Deployment, Manifest

    call_command("migrate", verbosity=0)
    System.objects.create(pk=1, system_type="system-core")
    for key in COMPONENTS:
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
    actor = Actor("user", "bench").as_json()
    Bundle.objects.bulk_create(
        Bundle(
            status="accepted",
            filename=f"b{n}.tar",
            sha256=f"{n:064x}",
            manifest_name="system-core-v2",
            actor=actor,
        )
        for n in range(200)
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
            for k in COMPONENTS
        ],
    }
    now = timezone.now()
    batch = 2000
    outcomes = ("succeeded", "succeeded", "succeeded", "inconsistent", "rolled_back")
    for start in range(0, deployments, batch):
        with transaction.atomic():
            rows = Deployment.objects.bulk_create(
                Deployment(
                    manifest=manifest,
                    status=outcomes[(start + n) % len(outcomes)],
                    slot=None,
                    plan=plan,
                    actor=actor,
                    # spread over ~4 years, oldest first: the history chart and filters see real weeks
                    started_at=now - timedelta(minutes=21 * (deployments - start - n)),
                    finished_at=now - timedelta(minutes=21 * (deployments - start - n) - 1),
                    failed_in={},  # what deployment_close stores: none of its steps failed
                )
                for n in range(min(batch, deployments - start))
            )
            _insert_steps([d.pk for d in rows], steps, now)
    Deployment.objects.update(created_at=F("started_at"))  # auto_now_add set them all to now
    running = Deployment.objects.create(
        manifest=manifest, status="running", plan=plan, actor=actor, started_at=now
    )
    services.user_create(username="bench", role=Role.VIEWER, password=PASSWORD, actor=SYSTEM)
    token = services.token_create(username="bench", role=Role.VIEWER, name="load", actor=SYSTEM).secret
    return token, running.pk


def _insert_steps(deployment_ids: list[int], steps: int, now: Any) -> None:
    """Each deployment's steps and their `finished` events in two statements, straight to the
    database (the ORM's bulk_create spends most of a 100 000-deployment fill building objects)."""
    from django.db import connection

    from updates.models import Step, StepEvent

    prototype = Step(
        deployment_id=0,
        component="",
        state="",
        argv=[],
        started_at=now,
        ended_at=now,
        exit_code=0,
        stdout="ok\n" * 20,
    )
    fields = [f for f in Step._meta.local_concrete_fields if not f.primary_key]
    values = {f.attname: f.get_db_prep_save(getattr(prototype, f.attname), connection) for f in fields}
    rows = []
    for pk in deployment_ids:
        for i in range(steps):
            state = f"State{i}"
            argv = Step._meta.get_field("argv").get_db_prep_save(["/x", state], connection)
            change = {"deployment_id": pk, "component": COMPONENTS[i % 3], "state": state, "argv": argv}
            rows.append(tuple({**values, **change}[f.attname] for f in fields))
    columns = ", ".join(connection.ops.quote_name(f.column or f.attname) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    event = StepEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {Step._meta.db_table} ({columns}) VALUES ({marks})", rows)
        cursor.execute(
            f"INSERT INTO {event} (deployment_id, step_id, kind) SELECT deployment_id, id, 'finished' "
            f"FROM {Step._meta.db_table} WHERE deployment_id BETWEEN %s AND %s ORDER BY id",
            [min(deployment_ids), max(deployment_ids)],
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """gunicorn as `bin/run` starts it (its configuration file sets the worker class)."""
    cmd = [sys.executable, "-m", "gunicorn", *gunicorn_args(), "--bind", f"127.0.0.1:{port}"]
    cmd += ["--workers", str(workers), "--graceful-timeout", "5", "--no-control-socket"]
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


def gunicorn_args() -> list[str]:
    """The `-c CONFIG APP` of bin/run's gunicorn line, read from bin/run itself."""
    line = re.search(r"gunicorn (-c \S+ \S+:application)", (ROOT / "bin" / "run").read_text())
    if line is None:
        raise SystemExit("bin/run no longer starts gunicorn with -c CONFIG APP: update bench/api_load.py")
    return line.group(1).split()


def sign_in(port: int) -> str:
    """A session cookie for the pages, through the login form like a browser."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/accounts/login/")
    page = conn.getresponse()
    body = page.read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    cookie = re.search(r"csrftoken=([^;]+)", page.getheader("Set-Cookie") or "")
    if csrf is None or cookie is None:
        raise SystemExit("the login page has no CSRF token")
    form = f"username=bench&password={PASSWORD}&csrfmiddlewaretoken={csrf.group(1)}"
    conn.request(
        "POST",
        "/accounts/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookie.group(1)}",
            "Referer": f"http://127.0.0.1:{port}/accounts/login/",
        },
    )
    answer = conn.getresponse()
    answer.read()
    session = re.search(r"sessionid=([^;]+)", ", ".join(answer.headers.get_all("Set-Cookie") or []))
    if answer.status != 302 or session is None:
        raise SystemExit(f"signing in failed: HTTP {answer.status}")
    return f"sessionid={session.group(1)}"


def load(
    port: int, headers: dict[str, str], path_of: Callable[[random.Random], str], clients: int, seconds: float
) -> list[float]:
    """`clients` threads, each on its own keep-alive connection, for `seconds`: the latencies."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(n + int(time.monotonic() * 1000))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            path = path_of(rng)
            began = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            latencies[n].append(time.perf_counter() - began)
            if response.status != 200:
                errors.append(f"{response.status} for {path}")
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. HTTP {errors[0]}")
    return [x for per in latencies for x in per]


class Streams:
    """`count` event streams held open (raw sockets; the frames stay in the kernel's buffers)."""

    def __init__(self, port: int, token: str, deployment_id: int, count: int) -> None:
        self.socks: list[socket.socket] = []
        request = (
            f"GET /api/v1/deployments/{deployment_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(request)
            self.socks.append(sock)
        for sock in self.socks:  # every one answered: the server holds them all
            head = sock.recv(4096)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"an event stream was refused: {head[:200]!r}")

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def paired(
    measure_a: Callable[[], list[float]], measure_b: Callable[[], list[float]], rounds: int
) -> tuple[float, float, float, float, float]:
    """A B A B ...: (median of the pairwise p50 ratios B/A, lowest, highest, A's p50, B's p50)."""
    ratios, a_p50, b_p50 = [], [], []
    for _ in range(rounds):
        a = statistics.median(measure_a())
        b = statistics.median(measure_b())
        ratios.append(b / a)
        a_p50.append(a)
        b_p50.append(b)
    return (
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(a_p50),
        statistics.median(b_p50),
    )


def targets(deployments: int, running: int) -> dict[str, tuple[str, Callable[[random.Random], str]]]:
    """Route name -> (credential, path maker)."""
    pages = max(1, deployments // 50)
    return {
        "API GET /deployments?page=N": ("token", lambda r: f"/api/v1/deployments?page={r.randint(1, pages)}"),
        "API GET /deployments (first page)": ("token", lambda r: "/api/v1/deployments"),
        "API GET /deployments?after=ID (keyset)": (
            "token",
            lambda r: f"/api/v1/deployments?after={r.randint(2, deployments)}",
        ),
        "API GET /deployments?status=rolled_back": (
            "token",
            lambda r: "/api/v1/deployments?status=rolled_back",
        ),
        "API GET /deployments/{id}": ("token", lambda r: f"/api/v1/deployments/{r.randint(1, deployments)}"),
        "API GET /system": ("token", lambda r: "/api/v1/system"),
        "page System": ("session", lambda r: "/"),
        "page History": ("session", lambda r: "/history/"),
        "page History ?page=N": (
            "session",
            lambda r: f"/history/?page={r.randint(1, max(1, deployments // 25))}",
        ),
        "page Deployment": ("session", lambda r: f"/deployments/{r.randint(1, deployments)}/"),
        "page Audit": ("session", lambda r: "/audit/"),
        "page Bundles": ("session", lambda r: "/bundles/"),
    }


def run_size(
    args: argparse.Namespace, deployments: int
) -> dict[str, tuple[float, float, float, float, float]]:
    store = Path(tempfile.mkdtemp(prefix="orch-bench-api-"))
    env = {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "bench.api_load_settings",
        # 200 streams from one bench user: the per-user cap is for people, not this load
        "ORCH_EVENTS_PER_USER": str(max(args.streams, 1)),
        "ORCH_WEB_WORKERS": str(args.workers),
    }
    env.pop("DATABASE_URL", None)
    for key in ("MENDER_ORCHESTRATOR_DATASTORE_DIR", "DJANGO_SETTINGS_MODULE"):
        os.environ[key] = env[key]
    os.environ.pop("DATABASE_URL", None)
    began = time.monotonic()
    child = subprocess.run(
        [sys.executable, __file__, "--populate", str(deployments), "--steps", str(args.steps)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    token, running = child.stdout.split()
    print(
        f"database: {deployments} deployments x {args.steps} steps in {time.monotonic() - began:.1f} s ({store})"
    )
    port = args.port or free_port()
    server = serve(env, port, args.workers, store / "gunicorn.log")
    results: dict[str, tuple[float, float, float, float, float]] = {}
    try:
        creds = {"token": {"Authorization": f"Bearer {token}"}, "session": {"Cookie": sign_in(port)}}
        base = lambda: load(port, creds["token"], lambda r: "/bench/trivial", args.clients, args.seconds)  # noqa: E731
        load(port, creds["token"], lambda r: "/api/v1/system", args.clients, 1)  # warm up
        for name, (cred, path) in targets(deployments, int(running)).items():
            if args.only and not any(part in name for only in args.only for part in only.split("|")):
                continue
            measure = lambda cred=cred, path=path: load(port, creds[cred], path, args.clients, args.seconds)  # noqa: E731
            results[name] = paired(base, measure, args.rounds)
            report_row(f"{name} @ {deployments}", results[name], "<= 3")
        if args.streams:

            def system() -> list[float]:
                return load(port, creds["token"], lambda r: "/api/v1/system", args.clients, args.seconds)

            def with_streams() -> list[float]:
                streams = Streams(port, token, int(running), args.streams)
                try:
                    return system()
                finally:
                    streams.close()

            name = f"API GET /system with {args.streams} streams open / without"
            results[name] = paired(system, with_streams, args.rounds)
            report_row(f"{name} @ {deployments}", results[name], "<= 1.5")
    finally:
        server.terminate()
        server.wait(10)
    return results


def report_row(name: str, row: tuple[float, float, float, float, float], goal: str) -> None:
    ratio, low, high, a, b = row
    print(
        f"| {name} | {ratio:.2f} | {low:.2f}..{high:.2f} | {goal} | {a * 1000:.1f} ms | {b * 1000:.1f} ms |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--deployments", type=int, nargs="+", default=[10_000])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streams", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="only the routes whose name contains this (A|B: either; repeat it for several)",
    )
    parser.add_argument("--populate", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.populate:  # the child that fills the database (Django set up in its own process)
        token, running = populate(args.populate, args.steps)
        print(token, running)
        return
    print(
        f"gunicorn as bin/run starts it ({' '.join(gunicorn_args())}), {args.workers} workers; "
        f"{args.clients} clients; {args.rounds} rounds of {args.seconds:.0f} s baseline + {args.seconds:.0f} s route"
    )
    print("| route | p50 / trivial view's p50 (median of pairs) | spread | goal | baseline p50 | route p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    sizes = {n: run_size(args, n) for n in args.deployments}
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        print(f"| route | ratio at {large} / ratio at {small} | goal |")
        print("| --- | --- | --- |")
        for name in sizes[large]:
            if name in sizes[small] and "streams" not in name:
                print(f"| {name} | {sizes[large][name][0] / sizes[small][name][0]:.2f} | <= 1.3 |")


if __name__ == "__main__":
    main()
