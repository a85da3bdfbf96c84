"""Issue 22, defect 1: one client's failures never refuse someone else's valid credential."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts import selectors, services
from accounts.models import AuthFailure, Role
from tests.security.conftest import SETUP
from updates.cli import build_parser
from updates.models import JournalEntry

PROXY = "127.0.0.1"  # behind the shipped nginx every request comes from here


@pytest.fixture
def admin(db: None, settings: Any) -> str:
    settings.AUTH_FAILURE_LIMIT = 3
    services.user_create(username="admin", role=Role.ADMIN, password="admin-password-1", actor=SETUP)
    return services.token_create(username="admin", role=Role.ADMIN, actor=SETUP).secret


def _login(client: Client, username: str, password: str) -> int:
    answer = client.post("/accounts/login/", {"username": username, "password": password})
    return int(answer.status_code)  # 302: signed in; 200: the form again


def test_it_accepts_a_valid_token_from_an_address_that_guessed_bad_ones(admin: str) -> None:
    stranger = Client(REMOTE_ADDR=PROXY)
    guesses = [
        stranger.get("/api/v1/system", HTTP_AUTHORIZATION=f"Bearer orch_guess{n}").status_code
        for n in range(11)
    ]
    assert guesses[:3] == [401, 401, 401] and set(guesses[3:]) == {429}  # guessing is slowed
    answer = Client(REMOTE_ADDR=PROXY).get("/api/v1/system", HTTP_AUTHORIZATION=f"Bearer {admin}")
    assert answer.status_code == 200
    again = stranger.get("/api/v1/system", HTTP_AUTHORIZATION="Bearer orch_guess99")
    assert again.status_code == 429 and again.json()["error"]["code"] == "rate_limited"


def test_it_limits_failed_logins_per_address_and_account(admin: str) -> None:
    services.user_create(username="eve", role=Role.VIEWER, password="eve-password-1", actor=SETUP)
    here = Client(REMOTE_ADDR="10.0.0.7")
    for _ in range(5):
        assert _login(here, "eve", "wrong") == 200
        assert _login(here, "nobody", "wrong") == 200
    # Another account from the same address is not concerned; the failed one is, from here only.
    assert _login(Client(REMOTE_ADDR="10.0.0.7"), "admin", "admin-password-1") == 302
    refused = here.post("/accounts/login/", {"username": "eve", "password": "eve-password-1"})
    assert refused.status_code == 200 and b"Too many failed attempts" in refused.content
    assert _login(Client(REMOTE_ADDR="10.0.0.8"), "eve", "eve-password-1") == 302


def test_it_takes_the_forwarded_address_only_from_a_trusted_proxy(admin: str, settings: Any) -> None:
    settings.BEHIND_PROXY = True
    for n in range(4):  # a stranger behind nginx fails the admin's password
        Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.9").post(
            "/accounts/login/", {"username": "admin", "password": f"guess{n}"}
        )
    assert selectors.login_blocked(address="203.0.113.9", account="admin")
    # The admin, behind the same nginx from elsewhere, signs in; a spoofed header is not believed.
    assert (
        _login(Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.2"), "admin", "admin-password-1")
        == 302
    )
    spoofed = Client(REMOTE_ADDR="192.0.2.50", HTTP_X_FORWARDED_FOR="198.51.100.2")
    spoofed.post("/accounts/login/", {"username": "eve", "password": "x"})
    assert AuthFailure.objects.filter(address="192.0.2.50").count() == 1
    # IPv6 loopback and the client's own earlier entries: the proxy's last entry counts.
    v6 = Client(REMOTE_ADDR="::1", HTTP_X_FORWARDED_FOR="6.6.6.6, 2001:db8::7")
    v6.post("/accounts/login/", {"username": "eve", "password": "x"})
    assert AuthFailure.objects.filter(address="2001:db8::7").count() == 1


def test_an_admin_sees_and_clears_a_block(admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    here = Client(REMOTE_ADDR="10.0.0.9")
    for n in range(3):
        _login(here, "admin", f"guess{n}")
    assert _login(here, "admin", "admin-password-1") == 200
    args = build_parser().parse_args(["access", "blocks"])
    assert args.handler(args) == 0
    assert "10.0.0.9" in capsys.readouterr().out
    args = build_parser().parse_args(["access", "unblock", "10.0.0.9", "--user", "admin"])
    assert args.handler(args) == 0
    assert "3 failed attempt(s)" in capsys.readouterr().out
    assert _login(here, "admin", "admin-password-1") == 302
    assert JournalEntry.objects.filter(kind="access.unblocked").count() == 1
    args = build_parser().parse_args(["access", "blocks"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == "no address or account is over its failure limit: nothing is blocked\n"
