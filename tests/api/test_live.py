"""The appliance over HTTP, end to end: gunicorn + a real Celery worker + the demo interfaces.

Upload the demo v2 bundle, deploy it, follow the event stream to the end, read the audit CSV;
then v3 with a board failing ArtifactCommit: the rollback shows in the stream and the audit."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.api.conftest import Personas, Web, start_web, stop_web
from tests.hooks.conftest import DEVICE, SECRET, signed, status_changed
from tests.integration.conftest import DemoSystem
from tests.worker.conftest import Appliance
from updates.actors import Actor
from updates.models import JournalEntry, WebhookEvent
from updates.services.hook_secret import hook_secret_set

V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}


def bundle_bytes(system: DemoSystem, version: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(system.system / f"manifest-v{version}.yaml", f"manifest-v{version}.yaml")
        for ctype in ("gateway", "rtos"):
            name = f"{ctype}-v{version}.mender"
            tar.add(system.system / "artifacts" / name, f"artifacts/{name}")
    return out.getvalue()


def events(
    web: Web, deployment: int, *, token: str, last_event_id: str | None = None
) -> list[dict[str, Any]]:
    """Read the stream to its `end` event: [{"id", "event", "data"}]."""
    conn = web.connect(timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    conn.request("GET", f"/api/v1/deployments/{deployment}/events", headers=headers)
    response = conn.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    received: list[dict[str, Any]] = []
    frame: dict[str, Any] = {}
    try:
        while line := response.readline().decode():
            line = line.rstrip("\n")
            if not line:
                if "event" in frame:
                    received.append(frame)
                    if frame["event"] == "end":
                        break
                frame = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                frame[key] = json.loads(value) if key == "data" else value
    finally:
        conn.close()
    return received


def deploy(web: Web, system: DemoSystem, version: int, token: str) -> int:
    upload = web.upload("/bundles", f"v{version}.tar.gz", bundle_bytes(system, version), token=token)
    assert upload.status == 201, upload.body
    bundle = upload.json()
    assert bundle["status"] == "accepted" and all(c["ok"] for c in bundle["checks"])
    assert bundle["actor"] == {"kind": "token", "name": "operator/ci", "label": "token operator/ci"}
    started = web.request("POST", "/deployments", token=token, body={"bundle_id": bundle["id"]})
    assert started.status == 202, started.body
    return int(started.json()["id"])


def steps(received: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["data"]["step"]["component"], e["data"]["step"]["state"], e["data"]["change"])
        for e in received
        if e["event"] == "step"
    ]


def audit(web: Web, token: str) -> list[dict[str, str]]:
    answer = web.request("GET", "/audit?format=csv", token=token)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.body.decode())))


def wait_for_health(web: Web, timeout: float = 30) -> Any:
    """The worker's first heartbeat comes a moment after it is ready."""
    deadline = time.monotonic() + timeout
    while True:
        answer = web.request("GET", "/health")
        if answer.status == 200 or time.monotonic() > deadline:
            assert answer.status == 200, answer.body
            return answer.json()
        time.sleep(0.2)


def test_it_uploads_deploys_streams_and_audits_then_rolls_back_a_failing_update(
    appliance: Appliance, web: Web, personas: Personas
) -> None:
    health = web.request("GET", "/health")
    assert health.status == 503 and health.json()["checks"]["worker"]["state"] == "down"
    appliance.start_worker()
    health = wait_for_health(web)
    assert health["checks"]["worker"]["state"] == "up" and "(pid " in health["checks"]["worker"]["detail"]
    operator, viewer = personas.token("operator"), personas.token("viewer")
    system = appliance.system

    first = deploy(web, system, 2, operator)
    stream = events(web, first, token=viewer)
    assert stream[-1] == {"event": "end", "data": {"deployment": first, "status": "succeeded"}}
    changes = steps(stream)
    for device in V2:
        key = f"{'gateway' if device == 'G13' else 'rtos'}.{device}"
        assert (key, "ArtifactInstall", "finished") in changes and (
            key,
            "ArtifactCommit",
            "finished",
        ) in changes
    ids = [int(e["id"]) for e in stream if e["event"] == "step"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert system.versions() == V2

    # Reconnecting after any event gives exactly the rest: no gap, no repeat.
    middle = len(ids) // 2
    again = [
        e for e in events(web, first, token=viewer, last_event_id=str(ids[middle])) if e["event"] == "step"
    ]
    rest = ids[middle + 1 :]
    assert [int(e["id"]) for e in again[: len(rest)]] == rest
    # What follows are the Provides queries that refresh the components after the run ended.
    assert {e["data"]["step"]["state"] for e in again[len(rest) :]} <= {"Identity", "Provides"}

    detail = web.request("GET", f"/deployments/{first}", token=viewer).json()
    assert [g["order"] for g in detail["groups"]] == [None, 10, 20]
    step = detail["groups"][1]["components"][0]["steps"][-1]
    log = web.request("GET", f"/deployments/{first}/steps/{step['id']}/log", token=viewer)
    assert log.status == 200 and log.json()["state"] == step["state"]

    rows = audit(web, viewer)  # one row per deployment and component, from the journal
    assert {(r["actor"], r["manifest_to"], r["outcome"]) for r in rows} == {
        ("token operator/ci", "system-core-v2", "succeeded")
    }
    assert {r["component"]: (r["version_before"], r["version_after"]) for r in rows} == {
        "gateway.G13": ("gateway-v1", "gateway-v2"),
        "rtos.R998": ("rtos-v1", "rtos-v2"),
        "rtos.R456": ("rtos-v1", "rtos-v2"),
    }
    assert all(len(r["bundle_sha256"]) == 64 for r in rows)

    system.fail("R456", "ArtifactCommit")
    second = deploy(web, system, 3, operator)
    stream = events(web, second, token=viewer)
    assert stream[-1]["data"]["status"] == "rolled_back"
    changes = steps(stream)
    assert ("rtos.R456", "ArtifactCommit", "finished") in changes
    assert ("rtos.R456", "ArtifactRollback", "finished") in changes
    finished = [
        e["data"]["step"] for e in stream if e["event"] == "step" and e["data"]["change"] == "finished"
    ]
    failed = [s for s in finished if not s["ok"]]
    assert [(s["component"], s["state"]) for s in failed] == [("rtos.R456", "ArtifactCommit")]
    assert system.versions() == V2

    rows = audit(web, viewer)
    assert [r["outcome"] for r in rows] == ["succeeded"] * 3 + ["rolled_back"] * 3
    assert (rows[3]["manifest_from"], rows[3]["manifest_to"]) == ("system-core-v2", "system-core-v3")
    before, after = rows[:3], rows[3:]
    assert [r["version_before"] for r in after] == [r["version_after"] for r in before]
    assert [r["version_after"] for r in after] == [r["version_after"] for r in before]
    assert after[0]["reason"].startswith("rtos.R456: ArtifactCommit")


def test_it_refuses_a_second_deployment_while_one_runs_and_a_rejected_bundle_with_every_reason(
    appliance: Appliance, web: Web, personas: Personas
) -> None:
    operator = personas.token("operator")
    (appliance.system.device("R456") / "ArtifactInstall.SLEEP").write_text("3")
    appliance.start_worker()
    first = deploy(web, appliance.system, 2, operator)
    busy = web.request("POST", "/deployments", token=operator, body={"previous": True})
    assert busy.status in (409, 422), busy.body  # 409 busy (or 422: no previous manifest yet)
    bundle = web.request("GET", "/bundles", token=operator).json()["items"][0]
    again = web.request("POST", "/deployments", token=operator, body={"bundle_id": bundle["id"]})
    assert again.status == 409 and again.json()["error"]["code"] == "busy"
    refused = web.request("DELETE", f"/bundles/{bundle['id']}", token=operator)
    assert refused.status == 409 and refused.json()["error"]["code"] == "bundle_in_use"
    appliance.wait_finished(first)

    broken = web.upload("/bundles", "broken.tar.gz", b"not a tar at all", token=operator)
    assert broken.status == 422 and broken.json()["status"] == "rejected"
    assert broken.json()["problems"], broken.body
    assert (
        web.request("GET", f"/bundles/{broken.json()['id']}", token=operator).json()["status"] == "rejected"
    )


def test_it_never_leaves_an_upload_behind(appliance: Appliance, web: Web, personas: Personas) -> None:
    """Over the limit -> 413 before a byte is written; a body without a length (chunked: Django
    under WSGI reads no such body) -> refused; a client that goes away mid-upload -> nothing.
    No bundle row and no file in any case."""
    operator = personas.token("operator")
    big = b"x" * (2 * 1024 * 1024)
    declared = web.upload("/bundles", "big.tar", big, token=operator)
    assert declared.status == 413 and declared.json()["error"]["code"] == "too_large"

    body, content_type = _multipart(big)
    conn = web.connect()
    conn.putrequest("POST", "/api/v1/bundles")
    conn.putheader("Authorization", f"Bearer {operator}")
    conn.putheader("Content-Type", content_type)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for start in range(0, len(body), 65536):
            chunk = body[start : start + 65536]
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may hang up as soon as it has said 413
    streamed = conn.getresponse()
    assert streamed.status in (413, 422), streamed.read()
    conn.close()

    _disconnect_mid_upload(web, operator, body, content_type)
    assert web.request("GET", "/bundles", token=operator).json()["total"] == 0
    assert _left(web.uploads) == []


def _multipart(content: bytes) -> tuple[bytes, str]:
    from tests.api.conftest import multipart

    return multipart("big.tar", content)


def _disconnect_mid_upload(web: Web, token: str, body: bytes, content_type: str) -> None:
    import socket
    import time

    with socket.create_connection(("127.0.0.1", web.port)) as sock:
        head = (
            f"POST /api/v1/bundles HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body) // 4}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 8])
        deadline = time.monotonic() + 10
        while not _left(web.uploads) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _left(web.uploads), "the server never started writing the upload"
    deadline = time.monotonic() + 10
    while _left(web.uploads) and time.monotonic() < deadline:
        time.sleep(0.1)


def _left(uploads: Path) -> list[str]:
    return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


def test_a_signed_mender_event_through_the_production_route(appliance: Appliance) -> None:
    """The hooks tests mount the router on a test URL conf; this one goes through the route the
    appliance serves (orchestrator_site/urls.py: /api/v1/hooks/mender) under gunicorn."""
    hook_secret_set(
        secret=SECRET, actor=Actor("cli", "test")
    )  # into the appliance's data store, which gunicorn reads
    env = {**appliance.env, "ORCH_MENDER_DEVICE_ID": DEVICE}
    web = start_web(env, appliance.system.root / "gunicorn-hooks.log")
    try:
        body = status_changed(event_id="5e1f0c2a-7d3b-4e8f-9a6c-1b2d3e4f5a6b")
        unsigned = web.request(
            "POST", "/hooks/mender", raw=body, headers={"Content-Type": "application/json"}
        )
        assert unsigned.status == 401, unsigned.body
        assert not WebhookEvent.objects.exists()
        answer = web.request(
            "POST", "/hooks/mender", raw=body, headers={"Content-Type": "application/json", **signed(body)}
        )
    finally:
        stop_web(web)
    assert answer.status == 202, answer.body
    assert answer.json()["action"] == "refresh"
    event = WebhookEvent.objects.get()
    assert (event.event_id, event.type, event.device_id) == (
        "5e1f0c2a-7d3b-4e8f-9a6c-1b2d3e4f5a6b",
        "device-status-changed",
        DEVICE,
    )
    assert (event.own_device, event.action, event.answer_status) == (True, "refresh", 202)
    assert event.remote_addr == "127.0.0.1"
    journaled = JournalEntry.objects.get(kind="webhook.received")
    assert journaled.actor is not None and journaled.actor["kind"] == "webhook"
    assert journaled.subject == f"webhook:{event.event_id}"
    assert journaled.data["body_sha256"] == event.body_sha256
