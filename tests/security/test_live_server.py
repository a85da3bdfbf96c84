"""Issue 22's findings where the point is the server: one gunicorn (uvicorn workers and the ASGI
app, two workers of 4 view threads, as `bin/run` serves) over loopback HTTP for the whole module, its own data store and SQLite
database, set up with the real command line. Each test failed on 58d7ec3's behaviour."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.worker.conftest import wait_for
from updates.engine.hooks import signature

ROOT = Path(__file__).resolve().parents[2]
SECRET = "5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0de5ec0"


@dataclass
class Server:
    port: int
    env: dict[str, str]
    log: Path
    admin_token: str
    operator: str  # the operator's user name
    operator_token: str

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", "orchestrator", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("live-security")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "orchestrator_site.settings",
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(root / "datastore"),
        "MENDER_ORCHESTRATOR_CONF_DIR": str(root / "conf"),
        "ORCH_LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
        "ORCH_WEB_THREADS": "4",
    }
    for name in ("DATABASE_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    port = _free_port()
    plain = Server(port, env, root / "gunicorn.log", "", "op", "")
    plain.cli("migrate")
    plain.cli("user", "create", "boss", "--role", "admin", "--password-stdin", stdin="boss-password-1\n")
    plain.cli("user", "create", "op", "--role", "operator", "--password-stdin", stdin="op-password-12\n")
    plain.cli("hook-secret", "set", stdin=SECRET + "\n")
    admin = plain.cli("token", "create", "--user", "boss", "--role", "admin")
    operator = plain.cli("token", "create", "--user", "op", "--role", "operator")
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:orchestrator_site.gunicorn_conf"]
    cmd += ["orchestrator_site.asgi:application", "--bind", f"127.0.0.1:{port}"]  # as bin/run serves
    cmd += ["--workers", "2"]
    cmd += ["--no-control-socket", "--graceful-timeout", "2"]
    with open(plain.log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    web = Server(port, env, plain.log, admin, "op", operator)
    try:
        wait_for(lambda: _health(web) is not None, 30, lambda: web.log.read_text())
        yield web
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _health(web: Server, timeout: float = 10) -> float | None:
    """Seconds the health probe took, None when it got no answer within `timeout`."""
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=timeout)
        conn.request("GET", "/api/v1/health")
        conn.getresponse().read()
        conn.close()
    except OSError:
        return None
    return time.monotonic() - started


def _hook(web: Server, data: dict[str, object], event_id: str) -> tuple[int, dict[str, object], float]:
    body = json.dumps(
        {"id": event_id, "type": "deployment-requested", "data": data, "time": datetime.now(UTC).isoformat()}
    ).encode()
    headers = {"Content-Type": "application/json", "X-Men-Signature": signature(SECRET, body)}
    started = time.monotonic()
    status, _, answer = web.request("POST", "/api/v1/hooks/mender", body=body, headers=headers)
    return status, json.loads(answer), time.monotonic() - started


# ----- defect 3: SSRF -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:{port}/api/v1/health",
        "https://2130706433:{port}/api/v1/health",  # decimal
        "https://0177.0.0.1:{port}/api/v1/health",  # octal
        "https://0x7f.0.0.1:{port}/api/v1/health",  # hex
        "https://127.1:{port}/api/v1/health",  # short form
        "https://[::1]:{port}/api/v1/health",
        "https://[::ffff:127.0.0.1]:{port}/api/v1/health",  # IPv4-mapped IPv6
        "https://169.254.169.254/latest/meta-data/",  # link-local: the cloud metadata service
        "https://[fe80::1]/",
        "https://10.0.0.1/bundle.tar",
        "https://[fd00::1]/bundle.tar",  # unique local
        "https://0.0.0.0:{port}/",
    ],
)
def test_a_deployment_request_naming_a_non_public_address_is_refused_at_once(
    server: Server, url: str
) -> None:
    status, answer, _ = _hook(server, {"bundle_url": url.format(port=server.port)}, f"ssrf-{abs(hash(url))}")
    assert status == 422, answer
    error = answer["error"]
    assert isinstance(error, dict) and error["code"] == "url_refused"
    assert "ORCH_HOOKS_FETCH_ALLOW" in error["message"] and "status" not in error["message"]


def test_a_deployment_request_by_url_is_answered_before_anything_is_fetched(server: Server) -> None:
    """A server that trickles one byte every 2 s held the hook 84 s; now the hook answers at
    once and the fetch (with its deadline) runs on a worker."""
    trickler = socket.socket()
    trickler.bind(("127.0.0.1", 0))
    trickler.listen()
    try:
        url = f"https://localhost:{trickler.getsockname()[1]}/v2.tar.gz"  # a name: resolved by the worker
        status, answer, took = _hook(server, {"bundle_url": url}, "ssrf-slow-1")
    finally:
        trickler.close()
    assert (status, answer["action"]) == (202, "fetch")
    assert took < 2


# ----- defect 5: headers, roles at once, one log line per 403 --------------------------------------


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/health", "/no-such-page/"])
def test_every_answer_carries_the_content_security_policy(server: Server, path: str) -> None:
    _, headers, _ = server.request("GET", path)
    policy = headers.get("Content-Security-Policy", "")
    assert (
        "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in policy


def _sign_in(server: Server, user: str, password: str) -> str:
    """The Cookie header of a browser signed in through the login form."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/accounts/login/")
        first = conn.getresponse()
        first.read()
        csrf = (first.getheader("Set-Cookie") or "").split(";")[0]
        form = f"csrfmiddlewaretoken={csrf.split('=', 1)[1]}&username={user}&password={password}"
        headers = {"Cookie": csrf, "Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/accounts/login/", body=form, headers=headers)
        login = conn.getresponse()
        login.read()
    finally:
        conn.close()
    session = [
        c.split(";")[0] for c in login.headers.get_all("Set-Cookie") or [] if c.startswith("sessionid")
    ]
    assert session, f"{user} was not signed in ({login.status})"
    return f"{csrf}; {session[0]}"


def test_a_demoted_users_token_is_refused_by_every_web_process_at_once(server: Server) -> None:
    """The per-process 2 s cache let a demoted user's token work now and then."""
    admin = _sign_in(server, "boss", "boss-password-1")
    _, _, page = server.request("GET", "/manage/", headers={"Cookie": admin})
    found = re.search(
        rb"<td>op</td>\s*<td>\s*<form method=\"post\" action=\"(/manage/users/\d+/role)\"", page
    )
    assert found is not None
    role_url, csrf = found[1].decode(), admin.split(";")[0].split("=", 1)[1]
    demote = f"csrfmiddlewaretoken={csrf}&role=viewer".encode()
    form = {"Cookie": admin, "Content-Type": "application/x-www-form-urlencoded"}
    headers = {"Authorization": f"Bearer {server.operator_token}", "Content-Type": "application/json"}
    body = json.dumps({"manifest": "kind: nothing"}).encode()
    # Both workers have just seen the token as the operator's (422: the manifest is bad)...
    assert {server.request("POST", "/api/v1/plan", body=body, headers=headers)[0] for _ in range(8)} == {422}
    try:
        assert server.request("POST", role_url, body=demote, headers=form)[0] == 302
        # ...and the very next requests, to either worker, are refused.
        statuses = [server.request("POST", "/api/v1/plan", body=body, headers=headers)[0] for _ in range(12)]
    finally:
        server.cli("user", "set-role", server.operator, "operator")
    assert statuses == [403] * 12


def test_a_refused_page_logs_one_line_not_a_traceback(server: Server) -> None:
    before = len(server.log.read_text(errors="replace"))
    status, _, _ = server.request(
        "GET", "/manage/", headers={"Cookie": _sign_in(server, "op", "op-password-12")}
    )
    assert status == 403
    wait_for(lambda: "Forbidden" in server.log.read_text(errors="replace")[before:], 10, lambda: "no line")
    added = server.log.read_text(errors="replace")[before:]
    assert "Forbidden (Permission denied): /manage/" in added
    assert "Traceback" not in added


# ----- defect 6: slow bodies --------------------------------------------------------------------------


def test_slow_request_bodies_do_not_starve_the_health_probe(server: Server) -> None:
    """20 clients sending a webhook body at a byte a second (reconnecting when cut), straight to
    gunicorn (8 view threads here): without a limit every thread waits on them and the probe times
    out; with it each is cut after the grace time and the probe gets through."""
    stop = threading.Event()

    def slow_client() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                    sock.sendall(
                        b"POST /api/v1/hooks/mender HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                    )
                    while not stop.is_set():
                        sock.sendall(b" ")
                        stop.wait(1)
            except OSError:
                continue  # cut off: come back, as the probe's attacker did

    clients = [threading.Thread(target=slow_client, daemon=True) for _ in range(20)]
    for client in clients:
        client.start()
    try:
        time.sleep(1)
        probes = []
        for _ in range(5):
            probes.append(_health(server, timeout=10))
            time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(5)
    assert None not in probes, probes
    assert statistics.median(p for p in probes if p is not None) < 6, probes
    assert "slow request body from 127.0.0.1 cut off" in server.log.read_text(errors="replace")
