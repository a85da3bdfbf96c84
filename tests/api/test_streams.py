"""Event streams off the request threads (docs/api.md, "Events"), against gunicorn started as
`bin/run` starts it: a dozen streams held open on a server with 4 view threads leave the other
routes answering; every stream gets the step, the heartbeat and the end; a user's streams are
capped and a closed stream gives its place back."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from django.utils import timezone

from tests.api.conftest import SETUP, Personas, Web
from updates.models import Deployment, Manifest, Step, StepEvent

CAP = 12  # ORCH_EVENTS_PER_USER in the `web` fixture; it runs 4 threads in 1 worker


class Stream:
    """One raw event stream: the frames read so far."""

    def __init__(self, web: Web, deployment: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", web.port), timeout=10)
        self.sock.sendall(
            f"GET /api/v1/deployments/{deployment}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.buffer = b""

    def read_until(self, needle: bytes, seconds: float = 10) -> bytes:
        deadline = time.monotonic() + seconds
        while needle not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            assert chunk, f"the stream ended before {needle!r}: {self.buffer[-500:]!r}"
            self.buffer += chunk
        return self.buffer

    def frames(self, event: str) -> list[dict[str, Any]]:
        out = []
        for block in self.buffer.decode().split("\n\n"):
            lines = dict(
                line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
            )
            if lines.get("event") == event:
                out.append(json.loads(lines["data"]))
        return out

    def close(self) -> None:
        self.sock.close()


def _running() -> Deployment:
    manifest = Manifest.objects.create(
        name="sys-v2", form="current", sha256="0" * 64, raw="", source_path="/m"
    )
    return Deployment.objects.create(manifest=manifest, status="running", actor=SETUP.as_json())


def test_open_streams_hold_no_thread_and_each_gets_its_steps_heartbeats_and_end(
    web: Web, personas: Personas
) -> None:
    deployment = _running()
    streams = [
        Stream(web, deployment.pk, personas.token(role))
        for role in ("viewer", "operator", "admin")
        for _ in range(4)
    ]
    for stream in streams:
        stream.read_until(b'"status": "running"')
    # 12 streams open, 4 view threads: the other routes still answer at once.
    began = time.monotonic()
    for _ in range(8):
        assert web.request("GET", "/system", token=personas.token("viewer")).status == 200
    assert time.monotonic() - began < 5

    for stream in streams:
        stream.read_until(b": keep-alive")  # ORCH_EVENTS_HEARTBEAT_SECONDS=1 while nothing happens
    step = Step.objects.create(
        deployment=deployment, component="rtos.R1", state="Download", started_at=timezone.now()
    )
    event = StepEvent.objects.create(deployment=deployment, step=step, kind="started")
    for stream in streams:
        stream.read_until(f"id: {event.pk}\n".encode())
        assert [f["step"]["state"] for f in stream.frames("step")] == ["Download"]
    Deployment.objects.filter(pk=deployment.pk).update(status="succeeded", slot=None)
    for stream in streams:
        stream.read_until(b"event: end")
        assert stream.frames("end") == [{"deployment": deployment.pk, "status": "succeeded"}]
        stream.close()


def test_a_user_has_at_most_the_cap_of_streams_and_a_closed_one_frees_its_place(
    web: Web, personas: Personas
) -> None:
    deployment = _running()
    viewer = personas.token("viewer")
    streams = [Stream(web, deployment.pk, viewer) for _ in range(CAP)]
    for stream in streams:
        stream.read_until(b"event: status")
    refused = web.request("GET", f"/deployments/{deployment.pk}/events", token=viewer)
    assert refused.status == 429 and refused.json()["error"]["code"] == "too_many_streams"
    # Another user is not held up by the viewer's streams.
    other = Stream(web, deployment.pk, personas.token("operator"))
    other.read_until(b"event: status")
    other.close()
    streams.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the closed socket at its next frame or heartbeat
        again = Stream(web, deployment.pk, viewer)
        head = again.read_until(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 200"):
            break
        again.close()
        assert time.monotonic() < deadline, head
        time.sleep(0.2)
    again.close()
    for stream in streams:
        stream.close()
