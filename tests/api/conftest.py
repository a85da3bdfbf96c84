"""Real parts for the API tests: the worker tests' appliance (demo system, Redis, real Celery
workers, a file database they share) plus a real gunicorn serving the app over loopback HTTP,
and personas — a user and a token per role, an expired token, a revoked token."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import ApiToken, Role
from tests.worker.conftest import (
    Appliance,
    appliance,
    broker,
    demo,
    migrated_db,
    wait_for,
)
from updates.actors import Actor

__all__ = ["appliance", "broker", "demo", "migrated_db"]

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_LIMIT = 1024 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Web:
    """A gunicorn process serving the appliance's web app on a loopback port."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    uploads: Path

    def connect(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        conn = self.connect()
        try:
            conn.request(method, "/api/v1" + path, body=data, headers=sent)
            response = conn.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    def upload(self, path: str, name: str, content: bytes, *, token: str) -> Answer:
        body, content_type = multipart(name, content)
        return self.request("POST", path, token=token, raw=body, headers={"Content-Type": content_type})

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def multipart(name: str, content: bytes, boundary: str = "orch-test-boundary") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_web(env: dict[str, str], log: Path, *, threads: int = 4, workers: int = 1) -> Web:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:orchestrator_site.gunicorn_conf",  # as bin/run: uvicorn workers, the ASGI app
        "orchestrator_site.asgi:application",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    cmd += ["--workers", str(workers)]
    env = {**env, "ORCH_WEB_THREADS": str(threads)}
    cmd += ["--no-control-socket", "--graceful-timeout", "2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    web = Web(
        port=port, proc=proc, log=log, uploads=Path(env["MENDER_ORCHESTRATOR_DATASTORE_DIR"]) / "uploads"
    )
    wait_for(lambda: _answers(web), 30, lambda: f"gunicorn did not start:\n{web.text()}")
    return web


def stop_web(web: Web) -> None:
    if web.proc.poll() is None:
        os.killpg(web.proc.pid, signal.SIGTERM)
        try:
            web.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(web.proc.pid, signal.SIGKILL)
            web.proc.wait(5)


def _answers(web: Web) -> bool:
    if web.proc.poll() is not None:
        raise AssertionError(f"gunicorn exited:\n{web.text()}")
    try:
        return web.request("GET", "/health").status in (200, 503)
    except OSError:
        return False


@pytest.fixture
def web(appliance: Appliance) -> Iterator[Web]:
    env = {
        **appliance.env,
        "ORCH_UPLOAD_MAX_BYTES": str(UPLOAD_LIMIT),
        "ORCH_AUTH_FAILURE_LIMIT": "100000",  # the role matrix sends bad tokens by the dozen
        "ORCH_EVENTS_POLL_SECONDS": "0.1",
        "ORCH_EVENTS_PER_USER": "12",  # tests/api/test_streams.py opens one more
        "ORCH_EVENTS_HEARTBEAT_SECONDS": "1",
    }
    server = start_web(env, appliance.system.root / "gunicorn.log")
    yield server
    stop_web(server)


@dataclass(frozen=True)
class Personas:
    tokens: dict[str, str | None]  # persona -> bearer token (None: anonymous)

    def token(self, persona: str) -> str:
        token = self.tokens[persona]
        assert token is not None
        return token


SETUP = Actor("cli", "test-setup")  # the fixtures write as the command line would


@pytest.fixture
def personas(transactional_db: None) -> Personas:
    tokens: dict[str, str | None] = {"anonymous": None}
    for role in Role:
        services.user_create(username=role.value, role=role, password=uuid.uuid4().hex, actor=SETUP)
        tokens[role.value] = services.token_create(
            username=role.value, role=role, name="ci", actor=SETUP
        ).secret
    expired = services.token_create(
        username="admin", role=Role.ADMIN, name="expired", expires_days=1, actor=SETUP
    )
    ApiToken.objects.filter(pk=expired.row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = services.token_create(username="admin", role=Role.ADMIN, name="revoked", actor=SETUP)
    services.token_revoke(token_id=revoked.row.pk, actor=SETUP)
    tokens |= {"expired": expired.secret, "revoked": revoked.secret}
    return Personas(tokens=tokens)
