"""POST /api/v1/hooks/mender with bodies shaped exactly like Mender's: signatures, replays, the
time window, refreshes for the own device, and deployment requests (bundle id or URL).

Django's test client here; tests/hooks/test_hooks_live.py goes through real HTTP."""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.engine.test_hooks import PROVISIONED
from tests.hooks.conftest import (
    DEVICE,
    URL,
    FileServer,
    mender_event,
    signed,
    stale,
    status_changed,
    v2_bundle,
)
from tests.integration.conftest import DemoSystem
from updates import selectors
from updates.actors import SYSTEM, Actor
from updates.models import Bundle, Deployment, JournalEntry, WebhookEvent
from updates.services import bundles, hooks
from updates.services.hook_secret import hook_secret_path
from updates.tasknames import TASK_FETCH, TASK_REFRESH, TASK_RUN

pytestmark = [pytest.mark.urls("tests.hooks.urls"), pytest.mark.django_db]
Capture = Callable[..., Any]


def post(client: Client, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        URL, data=body, content_type="application/json", headers=signed(body) if headers is None else headers
    )


def sent(callbacks: list[Callable[[], None]]) -> list[tuple[object, ...]]:
    """The task messages waiting for the commit (dispatch._enqueue partials)."""
    return [tuple(getattr(cb, "args", ())) for cb in callbacks]


# ----- device events --------------------------------------------------------------------------------


def test_it_records_an_event_about_another_device(
    client: Client, secret: str, django_capture_on_commit_callbacks: Capture
) -> None:
    body = mender_event("device-provisioned", PROVISIONED | {"id": "another-device"})
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, body)
    assert response.status_code == 200, response.content
    assert response.json()["action"] == "recorded"
    row = WebhookEvent.objects.get()
    assert (row.type, row.device_id, row.own_device, row.action) == (
        "device-provisioned",
        "another-device",
        False,
        "recorded",
    )
    assert row.data["auth_sets"][0]["identity_data"] == {"mac": "02:42:ac:11:00:02"}
    assert row.remote_addr == "127.0.0.1"
    assert sent(callbacks) == []


def test_it_refreshes_the_components_on_an_event_about_its_own_device(
    client: Client, secret: str, settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.MENDER_DEVICE_ID = DEVICE
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, status_changed())
    assert response.status_code == 202, response.content
    assert response.json() | {"event": ""} == {
        "event": "",
        "type": "device-status-changed",
        "device_id": DEVICE,
        "own_device": True,
        "action": "refresh",
    }
    assert sent(callbacks) == [(TASK_REFRESH,)]


def test_it_knows_its_device_from_its_identity_or_its_device_token(
    client: Client, secret: str, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.MENDER_IDENTITY = {"mac": "02:42:ac:11:00:02"}
    with django_capture_on_commit_callbacks() as callbacks:
        assert post(client, mender_event("device-provisioned", PROVISIONED)).status_code == 202
    settings.MENDER_IDENTITY = {}
    token = "eyJhbGciOiJSUzI1NiJ9." + "eyJzdWIiOiI2NTQzYjJjOGYxZTJkM2E0YjVjNmQ3ZTgifQ" + ".c2ln"  # sub=DEVICE
    (tmp_path / "conf").mkdir()
    conf = {"ArtifactServer": {"URL": "https://mender.example.com", "Token": token}}
    (tmp_path / "conf" / "mender-orchestrator.conf").write_text(json.dumps(conf))
    with django_capture_on_commit_callbacks() as more:
        body = mender_event("inventory-changed", {"device_id": DEVICE, "tenant_id": "", "inventory": {}})
        assert post(client, body).json()["action"] == "refresh"
    assert sent(callbacks + more) == [(TASK_REFRESH,), (TASK_REFRESH,)]
    last = WebhookEvent.objects.order_by("id").last()
    assert last is not None and last.type == "device-inventory-changed"


def test_it_only_records_when_refresh_is_not_configured_for_the_event(
    client: Client, secret: str, settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.MENDER_DEVICE_ID = DEVICE
    settings.HOOKS_REFRESH_ON = ["device-provisioned"]
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, mender_event("device-decommissioned", {"id": DEVICE}))
    assert (response.status_code, response.json()["action"]) == (200, "recorded")
    assert response.json()["own_device"] is True
    assert sent(callbacks) == []


# ----- authentication -------------------------------------------------------------------------------------


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """A fresh rate limiter (its state is per process), and the log it writes to."""
    monkeypatch.setattr(hooks, "_unauthorized_log", hooks._RateLimitedLog(hooks.log, interval=60))
    caplog.set_level(logging.WARNING, logger="orchestrator.hooks")
    return caplog


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Men-Signature": "0" * 64},
        {"X-Men-Signature": "not even hex"},
        "signed with another secret",
        "signed over another body",
    ],
)
def test_it_refuses_unsigned_and_badly_signed_calls_recording_nothing(
    client: Client, secret: str, refusals: pytest.LogCaptureFixture, headers: Any
) -> None:
    body = status_changed()
    if headers == "signed with another secret":
        headers = signed(body, "ab" * 32)
    elif headers == "signed over another body":
        headers = signed(body + b"\n")
    response = post(client, body, headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert not WebhookEvent.objects.exists()
    assert len(refusals.records) == 1
    assert "webhook from 127.0.0.1 refused" in refusals.text


def test_it_rate_limits_the_log_of_refused_calls(
    client: Client, secret: str, refusals: pytest.LogCaptureFixture
) -> None:
    for _ in range(20):
        assert post(client, status_changed(), {"X-Men-Signature": "0" * 64}).status_code == 401
    assert len(refusals.records) == 1
    hooks._unauthorized_log.last -= 60  # the interval has passed
    post(client, status_changed(), {})
    assert len(refusals.records) == 2
    assert "no X-Men-Signature (19 more refused since the last line)" in refusals.records[1].getMessage()


def test_it_refuses_everything_until_a_secret_is_set(
    client: Client, settings: Any, tmp_path: Path, refusals: pytest.LogCaptureFixture
) -> None:
    settings.DATASTORE_DIR = tmp_path
    response = post(client, status_changed())
    assert response.status_code == 401
    assert "no hook secret set (orchestrator hook-secret set|rotate)" in refusals.text


def test_it_refuses_a_secret_file_others_can_read(
    client: Client, secret: str, refusals: pytest.LogCaptureFixture
) -> None:
    hook_secret_path().chmod(0o644)
    assert post(client, status_changed()).status_code == 401
    assert "lets others read it; it must be 0600" in refusals.text


def test_it_refuses_a_body_over_the_limit_before_reading_it(
    client: Client, secret: str, settings: Any
) -> None:
    settings.HOOKS_MAX_BODY_BYTES = 100
    response = post(client, mender_event("device-provisioned", PROVISIONED))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


# ----- validity, replays and the time window -------------------------------------------------------------------


def test_it_names_every_invalid_field_and_records_nothing(client: Client, secret: str) -> None:
    body = json.dumps({"id": "x y", "type": "device-exploded", "data": {}, "time": "now"}).encode()
    response = post(client, body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_event"
    assert [d["field"] for d in error["details"]] == ["id", "type", "time"]
    assert not WebhookEvent.objects.exists()


def test_it_answers_a_replay_as_the_first_time_and_starts_nothing(
    client: Client, secret: str, settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.MENDER_DEVICE_ID = DEVICE
    body = status_changed(event_id="5b0e0b44-9c35-4d7e-a8a4-1b5e4f0c2d11")
    with django_capture_on_commit_callbacks() as callbacks:
        first, second = post(client, body), post(client, body)
    assert (first.status_code, first.content) == (second.status_code, second.content)
    assert first.status_code == 202
    assert sent(callbacks) == [(TASK_REFRESH,)]
    assert WebhookEvent.objects.get().replays == 1


def test_it_answers_a_replay_with_another_body_by_its_id(
    client: Client, secret: str, django_capture_on_commit_callbacks: Capture
) -> None:
    first = post(client, status_changed(event_id="evt-1"))
    with django_capture_on_commit_callbacks() as callbacks:
        again = post(client, mender_event("deployment-requested", {"bundle_id": 1}, event_id="evt-1"))
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert sent(callbacks) == []
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(("minutes", "direction"), [(-6, "behind"), (6, "ahead of")])
def test_it_refuses_a_time_out_of_the_five_minute_window(
    client: Client, secret: str, settings: Any, minutes: int, direction: str
) -> None:
    settings.MENDER_DEVICE_ID = DEVICE
    body = status_changed(when=stale(minutes))
    response = post(client, body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "replay_window"
    assert f"{direction} this server's clock (limit 5 minutes)" in response.json()["error"]["message"]
    assert WebhookEvent.objects.get().action == "refused"
    assert post(client, body).json() == response.json()


def test_it_accepts_a_time_just_inside_the_window(client: Client, secret: str) -> None:
    for minutes in (-4.9, 4.9):
        assert post(client, status_changed(when=stale(minutes))).status_code == 200


# ----- deployment requests -------------------------------------------------------------------------------------


def test_it_starts_a_deployment_of_a_bundle_by_id_once(
    client: Client, system: DemoSystem, django_capture_on_commit_callbacks: Capture
) -> None:
    bundle = bundles.bundle_add_file(path=v2_bundle(system, system.root / "v2.tar.gz"), actor=SYSTEM)
    assert bundle.status == "accepted", bundle.problems
    body = mender_event("deployment-requested", {"bundle_id": bundle.pk}, event_id="ci-build-42")
    with django_capture_on_commit_callbacks() as callbacks:
        first, replay = post(client, body), post(client, body)
    assert first.status_code == 202, first.content
    deployment = Deployment.objects.get()
    assert (deployment.status, deployment.who) == ("queued", Actor("webhook", "ci-build-42"))
    assert first.json()["deployment"] == {"id": deployment.pk, "status": "queued"}
    assert (replay.status_code, replay.content) == (202, first.content)
    assert sent(callbacks) == [(TASK_RUN, deployment.pk)]
    event = selectors.webhook_event_for_actor(deployment.who)
    assert event is not None and event.deployment_id == deployment.pk
    report = selectors.webhook_event_report(event)
    assert report["actor"] == {"kind": "webhook", "id": "ci-build-42", "remote_addr": "127.0.0.1"}
    assert (report["action"], report["status"], report["replays"]) == ("deployment", 202, 1)


def test_it_answers_409_while_a_deployment_is_in_progress(
    client: Client, system: DemoSystem, django_capture_on_commit_callbacks: Capture
) -> None:
    bundle = bundles.bundle_add_file(path=v2_bundle(system, system.root / "v2.tar.gz"), actor=SYSTEM)
    with django_capture_on_commit_callbacks():
        assert post(client, mender_event("deployment-requested", {"bundle_id": bundle.pk})).status_code == 202
        busy = post(client, mender_event("deployment-requested", {"bundle_id": bundle.pk}))
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "busy"
    assert Deployment.objects.count() == 1


def test_it_refuses_an_unknown_bundle(client: Client, system: DemoSystem) -> None:
    response = post(client, mender_event("deployment-requested", {"bundle_id": 999}))
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "bundle_not_usable",
        "message": "bundle 999 does not exist",
        "details": {"bundle_id": 999},
    }


def fetch_requested(
    client: Client, url: str, capture: Capture, *, key: str = "bundle_url", event_id: str = ""
) -> WebhookEvent:
    """Send a deployment request by URL: answered 202 at once, the fetch queued for a worker
    after the commit; then the worker's half, run here. The event row, as the worker left it."""
    with capture() as callbacks:
        response = post(client, mender_event("deployment-requested", {key: url}, event_id=event_id))
    assert response.status_code == 202, response.content
    assert response.json()["action"] == "fetch"
    row = WebhookEvent.objects.get(event_id=response.json()["event"])
    assert (row.fetch_status, sent(callbacks)) == ("queued", [(TASK_FETCH, row.pk)])
    hooks.hook_fetch_run(event_pk=row.pk)
    row.refresh_from_db()
    return row


@pytest.fixture
def lab_allowed(settings: Any) -> None:
    """The loopback file server is a lab server the administrator allowed (docs/security.md §4)."""
    settings.HOOKS_FETCH_ALLOW = ["127.0.0.1"]


def test_it_fetches_a_bundle_url_on_a_worker_then_deploys_it(
    client: Client,
    system: DemoSystem,
    file_server: FileServer,
    lab_allowed: None,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    v2_bundle(system, file_server.root / "v2.tar.gz")
    url = f"{file_server.url}/v2.tar.gz"
    with django_capture_on_commit_callbacks(execute=False) as runs:
        row = fetch_requested(client, url, django_capture_on_commit_callbacks, event_id="ci-7")
    assert (row.fetch_status, row.fetch_error) == ("done", "")
    bundle = Bundle.objects.get()
    assert (bundle.status, bundle.who, bundle.filename) == ("accepted", Actor("webhook", "ci-7"), "v2.tar.gz")
    deployment = Deployment.objects.get()
    assert (row.bundle_id, row.deployment_id) == (bundle.pk, deployment.pk)
    assert sent(runs) == [(TASK_FETCH, row.pk), (TASK_RUN, deployment.pk)]
    assert file_server.requests == ["/v2.tar.gz"]
    assert list((system.datastore / "downloads").iterdir()) == []  # the download is not kept
    assert hooks.hook_fetch_run(event_pk=row.pk).endswith("not queued for a fetch (done already, or unknown)")
    assert Deployment.objects.count() == 1  # a redelivered message does nothing


def test_it_keeps_a_rejected_bundle_from_a_url_and_says_where_its_problems_are(
    client: Client,
    system: DemoSystem,
    file_server: FileServer,
    lab_allowed: None,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    with tarfile.open(file_server.root / "broken.tar", "w") as tar:
        tar.add(system.system / "manifest-v2.yaml", "manifest-v2.yaml")  # its artifacts missing
    row = fetch_requested(
        client, f"{file_server.url}/broken.tar", django_capture_on_commit_callbacks, key="artifact_url"
    )
    bundle = Bundle.objects.get()
    assert bundle.status == "rejected" and bundle.problems
    assert (row.fetch_status, row.bundle_id) == ("failed", bundle.pk)
    assert (
        row.fetch_error == f"bundle_rejected: bundle {bundle.pk} was rejected (its problems are on its page)"
    )
    assert not Deployment.objects.exists()
    failed = JournalEntry.objects.get(kind="webhook.fetch_failed")
    assert (failed.actor, failed.data["code"]) == (
        {"kind": "webhook", "name": row.event_id},
        "bundle_rejected",
    )


def test_it_refuses_plain_http_off_loopback_without_fetching(client: Client, system: DemoSystem) -> None:
    url = "http://192.0.2.10/bundles/v2.tar.gz"
    response = post(client, mender_event("deployment-requested", {"bundle_url": url}))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "url_refused"
    assert "must be an https:// URL (plain http only on loopback)" in response.json()["error"]["message"]
    assert not Bundle.objects.exists()


def test_it_cuts_a_download_off_at_the_limit(
    client: Client,
    system: DemoSystem,
    file_server: FileServer,
    lab_allowed: None,
    settings: Any,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    settings.HOOKS_DOWNLOAD_MAX_BYTES = 1000
    (file_server.root / "big.tar").write_bytes(b"\0" * 5000)
    row = fetch_requested(client, f"{file_server.url}/big.tar", django_capture_on_commit_callbacks)
    assert row.fetch_error.startswith("download_too_large: ")
    assert not Bundle.objects.exists()
    assert list((system.datastore / "downloads").iterdir()) == []


def test_it_reports_a_missing_file_as_a_failed_download(
    client: Client,
    system: DemoSystem,
    file_server: FileServer,
    lab_allowed: None,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    row = fetch_requested(client, f"{file_server.url}/gone.tar", django_capture_on_commit_callbacks)
    # The standard phrase of the status, not the server's own text ("File not found").
    assert row.fetch_error == f"download_failed: {file_server.url}/gone.tar: HTTP 404 Not Found"


def test_its_openapi_names_the_signature_and_every_answer() -> None:
    from tests.hooks.urls import api

    operation = api.get_openapi_schema()["paths"][URL]["post"]
    assert "security" not in operation  # the signature is the authentication
    assert [p["name"] for p in operation["parameters"]] == ["X-Men-Signature"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "id",
        "type",
        "data",
        "time",
    ]
    assert sorted(operation["responses"]) == [200, 202, 401, 409, 413, 422, 502]
