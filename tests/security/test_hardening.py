"""Issue 22, defect 5, in-process: the Content-Security-Policy and no inline script, no-store on
a secret shown once, user and token names, file names relative to the data store, the session
idle timeout, the database's mode, and `POST /api/v1/plan` naming files outside the data store.
(The 403 log line and a demotion on every process: test_live_server.py.) Each failed on 58d7ec3."""

from __future__ import annotations

import os
import re
import stat
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.backends.sqlite3.base import DatabaseWrapper
from django.test import Client

from accounts import services
from accounts.models import Role
from accounts.services import AccessError
from tests.integration.conftest import DemoSystem
from tests.security.conftest import SETUP
from updates.services.environment import store_relative

pytestmark = pytest.mark.django_db


class _Scripts(HTMLParser):
    """Every script that would run inline: <script> without src (JSON data blocks aside) and on*
    attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.inline.append(f"<script> at {self.getpos()}")
        self.inline += [f"{tag} {k}=" for k, _ in attrs if k.startswith("on")]


PAGES = [
    ("anonymous", "/accounts/login/"),
    ("viewer", "/"),
    ("viewer", "/bundles/"),
    ("viewer", "/history/"),
    ("viewer", "/audit/"),
    ("viewer", "/account/tokens/"),
    ("admin", "/manage/"),
    ("viewer", "/api/v1/docs"),
    ("viewer", "/no-such-page/"),
]


@pytest.mark.parametrize(("who", "path"), PAGES)
def test_every_page_has_a_content_security_policy_and_no_inline_script(
    clients: dict[str, Client], web_demo: DemoSystem, who: str, path: str
) -> None:
    response = clients[who].get(path)
    assert response.status_code in (200, 404), path
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "object-src 'none'" in policy
    parser = _Scripts()
    parser.feed(response.content.decode())
    assert parser.inline == [], path


def test_the_page_script_that_replaced_the_inline_ones_is_served() -> None:
    script = (Path(__file__).resolve().parents[2] / "orchestrator_site/static/js/page.js").read_text()
    assert 'classList.add("js")' in script and "window.print()" in script


def test_a_new_token_page_is_not_stored(clients: dict[str, Client]) -> None:
    response = clients["operator"].post("/account/tokens/new", {"name": "ci", "role": "viewer"})
    assert response.status_code == 200 and b'id="new-token">orch_' in response.content
    assert response["Cache-Control"] == "no-store"


# ----- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["ali/ce", "<b>x</b>", "a\nb", "ali ce", "", "-dash", "é", "x" * 151, "al\u202eice", "a;b"]
)
def test_a_user_name_with_markup_a_slash_or_other_characters_is_refused(name: str) -> None:
    with pytest.raises(AccessError, match="a user name is 1 to 150 ASCII letters"):
        services.user_create(username=name, role=Role.VIEWER, password="password-123", actor=SETUP)


@pytest.mark.parametrize("name", ["ci/deploy", "<script>", "a b", "x" * 101, "tok\ten"])
def test_a_token_name_with_markup_a_slash_or_other_characters_is_refused(name: str) -> None:
    services.user_create(username="alice", role=Role.OPERATOR, password="password-123", actor=SETUP)
    with pytest.raises(AccessError, match="a token name is 1 to 100 ASCII letters"):
        services.token_create(username="alice", role=Role.VIEWER, name=name, actor=SETUP)


def test_names_of_letters_digits_and_separators_are_accepted() -> None:
    services.user_create(
        username="Ops.Team_1@site+x", role=Role.OPERATOR, password="password-123", actor=SETUP
    )
    token = services.token_create(
        username="Ops.Team_1@site+x", role=Role.VIEWER, name="ci-v2.1_x", actor=SETUP
    )
    assert token.row.name == "ci-v2.1_x"


def test_the_pages_say_what_a_name_may_be(clients: dict[str, Client]) -> None:
    user = clients["admin"].post(
        "/manage/users", {"username": "a/b", "password": "password-123", "role": "viewer"}
    )
    token = clients["viewer"].post("/account/tokens/new", {"name": "<i>x</i>", "role": "viewer"})
    assert (user.status_code, token.status_code) == (400, 400)
    assert "a user name is 1 to 150 ASCII letters, digits and . _ @ + -" in user.content.decode()
    assert "a token name is 1 to 100 ASCII letters, digits and . _ -" in token.content.decode()


# ----- paths --------------------------------------------------------------------------------------


def _operator_token() -> str:
    services.user_create(username="op", role=Role.OPERATOR, password="password-123", actor=SETUP)
    return services.token_create(username="op", role=Role.OPERATOR, actor=SETUP).secret


def _plan(token: str, manifest: str) -> Any:
    return Client().post(
        "/api/v1/plan",
        {"manifest": manifest},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def _manifest(demo: DemoSystem, path: str) -> str:
    """The demo's v2 manifest, its gateway artifact named only by `path`."""
    text = (demo.system / "manifest-v2.yaml").read_text()
    text = text.replace("    artifact_path: artifacts/rtos-v2.mender\n", "")
    gateway = "artifact_path: artifacts/gateway-v2.mender\n    artifact_name: gateway-v2"
    return text.replace(gateway, f"artifact_path: {path}")


def test_a_plan_may_not_name_a_file_outside_the_data_store_and_cannot_tell_if_it_exists(
    web_demo: DemoSystem, tmp_path: Path
) -> None:
    token = _operator_token()
    (tmp_path / "exists.mender").write_bytes(b"not an artifact")
    answers = []
    for path in (
        "/etc/passwd",
        "/etc/no-such-file",
        str(tmp_path / "exists.mender"),
        "../../../../etc/passwd",
    ):
        response = _plan(token, _manifest(web_demo, path))
        assert response.status_code == 422, response.content
        error = response.json()["error"]
        answers.append((error["code"], error["details"]))
    assert len(set(map(str, answers))) == 1, answers  # the same answer, file or no file
    assert "outside the data store" in str(answers[0])


def test_an_error_names_a_data_store_file_relative_to_the_data_store(web_demo: DemoSystem) -> None:
    token = _operator_token()
    missing = web_demo.datastore / "artifacts" / "gone.mender"
    response = _plan(token, _manifest(web_demo, str(missing)))
    text = response.content.decode()
    assert response.status_code in (422, 503), text
    assert str(web_demo.datastore) not in text
    assert "artifacts/gone.mender" in text
    assert (
        store_relative(f"{web_demo.datastore}/bundles/3/manifest.yaml: bad") == "bundles/3/manifest.yaml: bad"
    )


# ----- sessions and the database file --------------------------------------------------------------


def test_a_session_left_idle_is_signed_out(clients: dict[str, Client], settings: Any) -> None:
    settings.SESSION_IDLE_SECONDS = 600
    viewer = clients["viewer"]
    assert viewer.get("/").status_code == 200  # marks the session as seen
    session = viewer.session
    session["_orch_seen"] = time.time() - 601
    session.save()
    response = viewer.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert viewer.get("/").status_code == 302  # signed out for good, not for one page


def test_a_session_in_use_stays_signed_in(clients: dict[str, Client], settings: Any) -> None:
    settings.SESSION_IDLE_SECONDS = 600
    viewer = clients["viewer"]
    assert viewer.get("/").status_code == 200
    session = viewer.session
    session["_orch_seen"] = time.time() - 599
    session.save()
    assert viewer.get("/").status_code == 200


def test_the_database_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    name = tmp_path / "orchestrator.sqlite3"
    old = os.umask(0o022)
    try:
        wrapper = DatabaseWrapper({**connections["default"].settings_dict, "NAME": str(name)})
        wrapper.ensure_connection()  # connection_created: as every process opens it
        wrapper.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(name.stat().st_mode) == 0o600


def test_the_demo_data_store_is_its_owners_only(web_demo: DemoSystem) -> None:
    assert stat.S_IMODE(web_demo.datastore.stat().st_mode) == 0o700


def test_the_idle_limit_and_the_body_limits_are_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs/environment.md").read_text()
    for name in ("ORCH_SESSION_IDLE_SECONDS", "ORCH_BODY_GRACE_SECONDS", "ORCH_HOOKS_FETCH_ALLOW"):
        assert re.search(rf"`{name}`", docs), name
