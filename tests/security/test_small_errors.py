"""Issue 22, defect 4: inputs that answered 500 (or redirected off-site) get a 4xx with the error
envelope on the API, or a safe page or redirect on the web."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts import services
from accounts.models import Role
from tests.hooks.conftest import URL, mender_event, secret, signed
from tests.security.conftest import SETUP
from updates.models import WebhookEvent

__all__ = ["secret"]  # the hook secret fixture

DEEP = b"[" * 50_000 + b"]" * 50_000


def _envelope(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.content[:300]
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] and error["message"]
    return error


@pytest.mark.parametrize("number", ["10000000000000000000000", "99999999999", "²", "-1", "x"])
def test_a_page_number_out_of_range_shows_a_page(clients: dict[str, Client], number: str) -> None:
    assert clients["viewer"].get("/history/", {"page": number}).status_code == 200


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_a_far_date_on_history_and_audit_is_refused_politely(clients: dict[str, Client], day: str) -> None:
    viewer = clients["viewer"]
    for key in ("until", "since"):
        assert viewer.get("/history/", {key: day}).status_code in (200, 400)
        assert viewer.get("/audit/", {key: day}).status_code == 400
        _envelope(viewer.get("/api/v1/audit", {key: day}), 422)
        _envelope(viewer.get("/api/v1/deployments", {key: day}), 422)
    _envelope(viewer.get("/api/v1/audit", {"until": "9999-12-31T23:59:59"}), 422)


def test_an_admin_revoking_a_token_that_does_not_exist_gets_a_page(clients: dict[str, Client]) -> None:
    answer = clients["admin"].post("/account/tokens/99999/revoke")
    assert answer.status_code == 404


def test_revoking_a_token_redirects_on_site_only(clients: dict[str, Client]) -> None:
    token = services.token_create(username="viewer", role=Role.VIEWER, actor=SETUP).row
    other = services.token_create(username="viewer", role=Role.VIEWER, name="b", actor=SETUP).row
    viewer = clients["viewer"]
    for nxt in ("https://evil.example", "//evil.example/x", "/\\evil.example"):
        answer = viewer.post(f"/account/tokens/{token.pk}/revoke", {"next": nxt})
        assert answer.status_code == 302 and answer["Location"] == "/account/tokens/", nxt
    answer = viewer.post(f"/account/tokens/{other.pk}/revoke", {"next": "/history/"})
    assert answer["Location"] == "/history/"


def test_a_signed_webhook_with_nan_is_refused_not_replayed(db: None, client: Client, secret: str) -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = mender_event("device-status-changed", {"id": "d", "status": "accepted", "n": 1}).replace(
            b'"n":1', b'"n":' + constant.encode()
        )
        answer = client.post(URL, data=body, content_type="application/json", headers=signed(body))
        assert _envelope(answer, 422)["code"] == "invalid_event"  # as any body that is no event
    assert WebhookEvent.objects.count() == 0


def test_deeply_nested_json_gets_a_4xx_on_the_hook_and_the_api(
    clients: dict[str, Client], client: Client, secret: str
) -> None:
    hook = client.post(URL, data=DEEP, content_type="application/json", headers=signed(DEEP))
    assert _envelope(hook, 422)["code"] == "invalid_event"
    operator = clients["operator"]
    operator.cookies["csrftoken"] = "x" * 32
    for path in ("/api/v1/plan", "/api/v1/deployments"):
        answer = operator.post(
            path, data=DEEP, content_type="application/json", headers={"X-CSRFToken": "x" * 32}
        )
        assert 400 <= answer.status_code < 500 and answer.json()["error"]["code"], answer.content[:200]
