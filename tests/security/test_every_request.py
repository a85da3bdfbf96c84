"""A token, a session and the role behind them are read on every request (docs/security.md):
the reads compiled once per process (accounts/selectors.py, accounts/sessions.py,
accounts/backends.py) must still see each change on the very next request, and each request's
own row, never the one the SQL was compiled for."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from accounts import selectors, services
from accounts.models import ApiToken, Role
from tests.security.conftest import SETUP
from updates.actors import Actor
from updates.selectors.prepared import prepared

pytestmark = pytest.mark.django_db

PLAN = {"manifest": "kind: nothing"}  # refused as a manifest (422) once the caller may plan


def _plan(token: str) -> int:
    answer = Client().post(
        "/api/v1/plan",
        data=json.dumps(PLAN),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    return answer.status_code


def _token(username: str, role: Role) -> str:
    services.user_create(username=username, role=role, password="password-12345", actor=SETUP)
    return services.token_create(username=username, role=role, name="t", actor=SETUP).secret


def test_each_token_is_its_own_principal() -> None:
    alice, bob = _token("alice", Role.OPERATOR), _token("bob", Role.VIEWER)
    for _ in range(2):  # the second time on the compiled SQL
        first, second = selectors.token_principal(alice), selectors.token_principal(bob)
        assert first is not None and second is not None
        assert (first.user.username, first.role, first.actor) == (
            "alice",
            Role.OPERATOR,
            Actor("token", "alice/t"),
        )
        assert (second.user.username, second.role) == ("bob", Role.VIEWER)
        assert (
            first.token is not None and first.token.name == "t" and first.user.email == ""
        )  # a deferred column
    assert selectors.token_principal(alice + "x") is None


@pytest.mark.parametrize("change", ["revoked", "expired", "deactivated", "demoted", "deleted"])
def test_a_token_change_counts_on_the_next_request(change: str) -> None:
    token = _token("op", Role.OPERATOR)
    assert _plan(token) == 422
    row = ApiToken.objects.get(user__username="op")
    if change == "revoked":
        services.token_revoke(token_id=row.pk, actor=SETUP)
    elif change == "expired":
        ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif change == "deactivated":
        User.objects.filter(username="op").update(is_active=False)
    elif change == "demoted":
        services.user_set_role(username="op", role=Role.VIEWER, actor=SETUP)
    else:
        User.objects.filter(username="op").delete()
    assert _plan(token) == (403 if change == "demoted" else 401)


@pytest.mark.parametrize("change", ["demoted", "deactivated", "signed out elsewhere", "expired", "deleted"])
def test_a_session_change_counts_on_the_next_request(clients: dict[str, Client], change: str) -> None:
    admin = clients["admin"]
    assert admin.get("/manage/").status_code == 200
    assert admin.get("/manage/").status_code == 200  # the second time on the compiled SQL
    key = admin.session.session_key
    if change == "demoted":
        services.user_set_role(username="admin", role=Role.VIEWER, actor=SETUP)
    elif change == "deactivated":
        User.objects.filter(username="admin").update(is_active=False)
    elif change == "signed out elsewhere":
        Session.objects.filter(session_key=key).delete()
    elif change == "expired":
        Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    else:
        User.objects.filter(username="admin").delete()
    answer = admin.get("/manage/")
    if change == "demoted":
        assert answer.status_code == 403
    else:
        assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


def test_each_session_is_its_own_user(clients: dict[str, Client]) -> None:
    for _ in range(2):
        assert clients["admin"].get("/manage/").status_code == 200
        assert clients["operator"].get("/manage/").status_code == 403
        assert '<span class="role">viewer</span>' in clients["viewer"].get("/bundles/").content.decode()


def test_a_prepared_read_refuses_an_argument_it_cannot_place() -> None:
    with pytest.raises(ValueError, match="compared once"):
        prepared("test.twice", lambda name: User.objects.filter(username=name, first_name=name), ("x",))


def test_the_menu_follows_the_role_and_marks_the_page_shown(clients: dict[str, Client]) -> None:
    """The page frame's links are resolved once per process (updates/web/context_processors.py);
    what the menu holds is still each request's: the Admin entry for an admin only, the current
    page marked."""
    admin = clients["admin"].get("/history/").content.decode()
    assert '<li><a href="/history/" aria-current="page">History</a></li>' in admin
    assert '<li><a href="/" >System</a></li>' in admin and '<a href="/manage/" >Admin</a>' in admin
    viewer = clients["viewer"].get("/").content.decode()
    assert '<li><a href="/" aria-current="page">System</a></li>' in viewer and "Admin</a>" not in viewer
    services.user_set_role(username="viewer", role=Role.ADMIN, actor=SETUP)
    assert "Admin</a>" in clients["viewer"].get("/").content.decode()
