"""The webhook through real HTTP (pytest-django's live server), and a deployment requested over
HTTP, its bundle fetched from a loopback server, run to the end by a real Celery worker."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.hooks.conftest import (
    DEVICE,
    SECRET,
    URL,
    FileServer,
    mender_event,
    signed,
    status_changed,
    v2_bundle,
)
from tests.worker.conftest import Appliance
from updates import selectors
from updates.actors import SYSTEM, Actor
from updates.models import Deployment, WebhookEvent
from updates.services.hook_secret import hook_secret_set

pytestmark = pytest.mark.urls("tests.hooks.urls")
V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}


def _fetched_deployment(event_id: str, timeout: float = 60) -> int:
    """The deployment a worker queued for a request by URL (the event row is the job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = WebhookEvent.objects.get(event_id=event_id)
        assert event.fetch_status != "failed", event.fetch_error
        if event.deployment_id is not None:
            return int(event.deployment_id)
        time.sleep(0.2)
    raise AssertionError(f"no deployment for {event_id} after {timeout} s")


def send(base: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        base + URL, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_it_answers_mender_over_http(live_server: Any, secret: str, settings: Any) -> None:
    settings.MENDER_DEVICE_ID = DEVICE
    body = status_changed(event_id="0b9d5a0e-7f0c-4f55-9a57-2f4f2e8c1d3a")
    status, first = send(live_server.url, body, signed(body))
    assert status == 202, first
    assert json.loads(first)["action"] == "refresh"
    assert send(live_server.url, body, signed(body)) == (202, first)  # a replay
    status, refused = send(live_server.url, body, {})
    assert status == 401
    assert json.loads(refused) == {
        "error": {"code": "unauthorized", "message": "missing or invalid X-Men-Signature", "details": None}
    }
    assert WebhookEvent.objects.get().replays == 1


def test_it_handles_the_same_event_sent_at_once_a_single_time(
    live_server: Any, secret: str, settings: Any
) -> None:
    settings.MENDER_DEVICE_ID = DEVICE
    body = status_changed(event_id="d2c1f7a4-2b4e-4c0e-9d0f-6a7b8c9d0e1f")
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: send(live_server.url, body, signed(body)), range(4)))
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(202) >= 1 and set(statuses) <= {202, 409}, answers
    event = WebhookEvent.objects.get()
    assert (event.action, event.replays) == ("refresh", 3)


def test_a_requested_deployment_runs_on_a_worker(
    live_server: Any, appliance: Appliance, file_server: FileServer, settings: Any
) -> None:
    demo = appliance.system
    v2_bundle(demo, file_server.root / "v2.tar.gz")
    hook_secret_set(secret=SECRET, actor=SYSTEM)
    # The loopback file server is a lab server the administrator allowed (docs/security.md §4):
    # for the hook in this process and for the worker that fetches.
    settings.HOOKS_FETCH_ALLOW = ["127.0.0.1"]
    appliance.env["ORCH_HOOKS_FETCH_ALLOW"] = "127.0.0.1"
    appliance.start_worker()

    body = mender_event(
        "deployment-requested", {"bundle_url": f"{file_server.url}/v2.tar.gz"}, event_id="ci-99"
    )
    status, answer = send(live_server.url, body, signed(body))
    assert status == 202, answer
    assert json.loads(answer)["action"] == "fetch"  # answered at once; the worker fetches
    deployment_id = _fetched_deployment("ci-99")
    deployment = appliance.wait_finished(deployment_id)
    assert deployment.status == "succeeded", deployment.reason
    assert demo.versions() == V2
    assert deployment.who == Actor("webhook", "ci-99")
    event = selectors.webhook_event_for_actor(deployment.who)
    assert event is not None and event.bundle is not None and event.bundle.who == Actor("webhook", "ci-99")

    assert send(live_server.url, body, signed(body)) == (202, answer)  # the replay starts nothing
    assert Deployment.objects.count() == 1
