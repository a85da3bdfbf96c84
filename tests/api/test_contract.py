"""Guard rails in-process (Django's test client through the whole middleware stack): the checked-in
OpenAPI document, query counts of the list endpoints, the session with CSRF, the rate limit on
failed logins and bad tokens, and the error envelope for what nobody planned."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services
from accounts.models import Role
from orchestrator_site.api import openapi_document
from tests.api.conftest import SETUP
from updates.models import Bundle, Deployment, Manifest, Step, StepEvent

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/python -m orchestrator_site.openapi_export docs/openapi.json"


def test_it_matches_the_checked_in_openapi_document(db: None) -> None:
    checked_in = (ROOT / "docs" / "openapi.json").read_text()
    assert openapi_document() == checked_in, (
        f"the API changed: regenerate docs/openapi.json with\n  {REGENERATE}"
    )


@pytest.fixture
def token(db: None) -> str:
    services.user_create(username="op", role=Role.OPERATOR, password="op-password-1", actor=SETUP)
    return services.token_create(username="op", role=Role.OPERATOR, name="t", actor=SETUP).secret


def _deployments(count: int, steps: int = 6) -> None:
    manifest = Manifest.objects.create(
        name="m", form="current", sha256="0" * 64, raw="", source_path="/x/m.yaml"
    )
    now = timezone.now()
    for _ in range(count):
        d = Deployment.objects.create(
            manifest=manifest,
            status="succeeded",
            slot=None,
            actor=SETUP.as_json(),
            started_at=now,
            finished_at=now + timedelta(seconds=3),
        )
        rows = Step.objects.bulk_create(
            Step(deployment=d, component="rtos.R1", state=f"S{i}", started_at=now, ended_at=now)
            for i in range(steps)
        )
        StepEvent.objects.bulk_create(StepEvent(deployment=d, step=s, kind="finished") for s in rows)


def _queries(client: Client, path: str, token: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 200, answer.content
    return len(captured)


@pytest.mark.parametrize(
    "path", ["/api/v1/deployments", "/api/v1/bundles", "/api/v1/audit", "/api/v1/system"]
)
def test_it_reads_lists_in_a_number_of_queries_that_does_not_grow_with_the_rows(
    token: str, path: str
) -> None:
    client = Client()
    _deployments(2)
    Bundle.objects.bulk_create(
        Bundle(status="rejected", filename=f"b{i}", actor=SETUP.as_json()) for i in range(2)
    )
    _queries(client, path, token)  # the token's first use of the minute also records it
    few = _queries(client, path, token)
    _deployments(40)
    Bundle.objects.bulk_create(
        Bundle(status="rejected", filename=f"b{i}", actor=SETUP.as_json()) for i in range(40)
    )
    assert _queries(client, path, token) == few
    assert few <= 8


def test_it_takes_the_session_with_csrf_on_unsafe_methods(db: None) -> None:
    services.user_create(username="browser", role=Role.OPERATOR, password="browser-password-1", actor=SETUP)
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/")
    csrf = page.cookies["csrftoken"].value
    login = client.post(
        "/accounts/login/",
        {"username": "browser", "password": "browser-password-1", "csrfmiddlewaretoken": csrf},
    )
    assert login.status_code == 302
    assert client.get("/api/v1/system").status_code == 200
    refused = client.post("/api/v1/system/refresh")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    csrf = client.cookies["csrftoken"].value
    assert client.post("/api/v1/system/refresh", HTTP_X_CSRFTOKEN=csrf).status_code == 202


def test_it_rate_limits_bad_tokens_per_address_and_failed_logins_per_account(db: None, settings: Any) -> None:
    settings.AUTH_FAILURE_LIMIT = 3
    services.user_create(username="u", role=Role.VIEWER, password="right-password-1", actor=SETUP)
    good = services.token_create(username="u", role=Role.VIEWER, actor=SETUP).secret
    client = Client(REMOTE_ADDR="10.0.0.7")
    statuses = [client.get("/api/v1/system", HTTP_AUTHORIZATION="Bearer wrong").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    blocked = client.get("/api/v1/system", HTTP_AUTHORIZATION="Bearer wrong")
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "rate_limited"
    # A valid token is never refused for someone else's guesses (issue 22).
    assert client.get("/api/v1/system", HTTP_AUTHORIZATION=f"Bearer {good}").status_code == 200
    elsewhere = Client(REMOTE_ADDR="10.0.0.8")
    for _ in range(3):
        elsewhere.post("/accounts/login/", {"username": "u", "password": "wrong"})
    answer = elsewhere.post("/accounts/login/", {"username": "u", "password": "right-password-1"})
    assert answer.status_code == 200 and b"Too many failed attempts" in answer.content


def test_it_answers_an_unexpected_error_with_an_id_the_log_has_and_no_trace(
    token: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from updates import selectors

    def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selectors, "system_report", broken)
    answer = Client().get("/api/v1/system", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["code"] == "internal_error" and b"secret internals" not in answer.content
    assert b"Traceback" not in answer.content
    assert error["details"]["id"] in caplog.text and "secret internals" in caplog.text


def test_it_names_the_field_of_a_validation_error(token: str) -> None:
    answer = Client().post(
        "/api/v1/deployments",
        {"bundle_id": "x"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "body.bundle_id"
    assert answer.json()["error"]["message"].startswith("invalid request: body.bundle_id: ")


def test_it_serves_the_docs_page_with_its_own_scripts(token: str) -> None:
    client = Client()
    page = client.get("/api/v1/docs", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert page.status_code == 200 and b"/static/ninja/swagger-ui-bundle.js" in page.content
    assert client.get("/static/ninja/swagger-ui-bundle.js").status_code == 200
