"""Who did it (issue 24), one row per write path driven through its real edge: an API request
with a bearer token, a web form posted by a signed-in session with its CSRF token, the command
line in this process (`updates.cli.main`), a signed webhook, and a worker's task body called as
the worker calls it. Each row reads back the newest journal entry of the kind that path writes
and checks its actor (kind and name): before this, the web UI's token and user changes were
journaled as the command line."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts import services as accounts
from accounts.models import ApiToken, Role
from tests.hooks.conftest import SECRET, mender_event, signed, status_changed
from tests.integration.conftest import DemoSystem
from tests.web.conftest import PASSWORD, demo_bundle, fast_hasher, migrated_db, queue, web_demo
from updates import cli
from updates.actors import CALLER_ENV, Actor, actor_of_command_line
from updates.models import Bundle, Deployment, JournalEntry
from updates.services import dispatch
from updates.services.hook_secret import hook_secret_set

__all__ = ["fast_hasher", "migrated_db", "queue", "web_demo"]  # fixtures

SETUP = Actor("system", "test-setup")  # what the fixtures write, apart from every edge's actor
OPERATOR = Actor("user", "operator")
ADMIN = Actor("user", "admin")
TOKEN = Actor("token", "operator/ci")
WEBHOOK = Actor("webhook", "evt-1")


def cli_actor() -> Actor:
    """The command line's actor in this process: the OS user, called as `cli`."""
    return actor_of_command_line()


@dataclass
class Edges:
    demo: DemoSystem
    token: str
    monkeypatch: pytest.MonkeyPatch

    def web(self, username: str, path: str, data: dict[str, Any] | None = None) -> Any:
        """POST a form as a signed-in user, with the CSRF token a browser would send."""
        client = Client(enforce_csrf_checks=True)
        assert client.login(username=username, password=PASSWORD)
        client.get("/")  # the pages set the CSRF cookie
        csrf = client.cookies["csrftoken"].value
        response = client.post(path, {**(data or {}), "csrfmiddlewaretoken": csrf})
        assert response.status_code in (200, 302), (path, response.status_code, response.content[:500])
        return response

    def api(self, method: str, path: str, body: Any = None, **extra: Any) -> Any:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {self.token}")
        call = getattr(client, method)
        if body is not None and "data" not in extra:
            extra |= {"data": json.dumps(body), "content_type": "application/json"}
        response = call(f"/api/v1{path}", **extra)
        assert response.status_code < 300, (path, response.status_code, response.content[:500])
        return response

    def cli(self, *argv: str, stdin: str = "") -> int:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code: int = cli.main(list(argv))
        return code

    def bundle(self, version: int = 2) -> Path:
        return demo_bundle(self.demo, version)

    def accepted_bundle(self) -> int:
        with open(self.bundle(), "rb") as fh:
            answer = self.api("post", "/bundles", data={"file": fh})
        bundle_id: int = answer.json()["id"]
        return bundle_id

    def stopped(self) -> Deployment:
        """A deployment stopped before its commit, started by the command line."""
        self.cli("install", str(self.bundle()), "--stop-before", "ArtifactCommit")
        deployment = Deployment.objects.get()
        assert deployment.status == Deployment.Status.STOPPED, deployment.reason
        return deployment


@pytest.fixture
def edges(
    web_demo: DemoSystem, queue: Path, transactional_db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Edges]:
    settings.REBOOT_WAIT_SECONDS = 0
    settings.MENDER_DEVICE_ID = ""
    monkeypatch.delenv(CALLER_ENV, raising=False)
    for role in Role:
        accounts.user_create(username=role.value, role=role, password=PASSWORD, actor=SETUP)
    token = accounts.token_create(username="operator", role=Role.OPERATOR, name="ci", actor=SETUP)
    hook_secret_set(secret=SECRET, actor=SETUP)
    yield Edges(demo=web_demo, token=token.secret, monkeypatch=monkeypatch)


def newest(kind: str) -> Actor:
    entry = JournalEntry.objects.filter(kind=kind).order_by("-seq").first()
    assert entry is not None, f"no {kind} entry in the journal"
    return Actor.from_json(entry.actor)


# ----- the table: (write path, how it is driven, the entry it writes, who that entry names) ----------


def token_create_web(e: Edges) -> None:
    e.web("operator", "/account/tokens/new", {"name": "laptop", "role": "viewer", "expires_days": ""})


def token_revoke_web(e: Edges) -> None:
    token = ApiToken.objects.get(name="ci")
    e.web("operator", f"/account/tokens/{token.pk}/revoke")


def token_create_cli(e: Edges) -> None:
    assert e.cli("token", "create", "--user", "viewer", "--role", "viewer", "--name", "script") == 0


def token_revoke_cli(e: Edges) -> None:
    assert e.cli("token", "revoke", str(ApiToken.objects.get(name="ci").pk)) == 0


def user_create_web(e: Edges) -> None:
    e.web("admin", "/manage/users", {"username": "carol", "password": "carol-password-1", "role": "viewer"})
    assert User.objects.filter(username="carol").exists()


def user_set_role_web(e: Edges) -> None:
    e.web("admin", f"/manage/users/{User.objects.get(username='viewer').pk}/role", {"role": "operator"})


def user_create_cli(e: Edges) -> None:
    assert (
        e.cli("user", "create", "dave", "--role", "viewer", "--password-stdin", stdin="dave-password-1\n")
        == 0
    )


def user_set_role_cli(e: Edges) -> None:
    assert e.cli("user", "set-role", "viewer", "operator") == 0


def login_web(e: Edges) -> None:
    assert Client().post("/accounts/login/", {"username": "admin", "password": PASSWORD}).status_code == 302


def bundle_upload_api(e: Edges) -> None:
    e.accepted_bundle()


def bundle_upload_web(e: Edges) -> None:
    with open(e.bundle(), "rb") as fh:
        e.web("operator", "/bundles/upload", {"file": fh})


def bundle_add_cli(e: Edges) -> None:
    assert e.cli("bundle", "add", str(e.bundle())) == 0


def bundle_delete_api(e: Edges) -> None:
    e.api("delete", f"/bundles/{e.accepted_bundle()}")


def deployment_start_api(e: Edges) -> None:
    e.api("post", "/deployments", {"bundle_id": e.accepted_bundle()})


def deployment_start_web(e: Edges) -> None:
    bundle_id = e.accepted_bundle()
    e.web("operator", f"/bundles/{bundle_id}/deploy", {"confirm": "on"})
    assert Deployment.objects.get().who == OPERATOR


def deployment_install_cli(e: Edges) -> None:
    assert e.cli("install", str(e.bundle())) == 0


def deployment_install_update_module(e: Edges) -> None:
    e.monkeypatch.setenv(CALLER_ENV, "update-module")
    assert e.cli("install", str(e.bundle())) == 0


def deployment_resume_api(e: Edges) -> None:
    e.api("post", f"/deployments/{e.stopped().pk}/resume", {})


def deployment_rollback_web(e: Edges) -> None:
    e.web("operator", f"/deployments/{e.stopped().pk}/rollback")


def deployment_resume_web(e: Edges) -> None:
    e.web("operator", f"/deployments/{e.stopped().pk}/resume")


def deployment_rollback_api(e: Edges) -> None:
    e.api("post", f"/deployments/{e.stopped().pk}/rollback", {})


def deployment_resume_cli(e: Edges) -> None:
    e.stopped()
    assert e.cli("resume") == 0


def deployment_rollback_cli(e: Edges) -> None:
    e.stopped()
    e.cli("rollback")  # exit 1: the deployment failed to apply (it was rolled back), as asked
    assert Deployment.objects.get().status == "rolled_back"


def worker_continues_a_requested_resume(e: Edges) -> None:
    """The API asks; the worker's task body (worker/tasks.py) carries it out, as the asker."""
    stopped = e.stopped()
    e.api("post", f"/deployments/{stopped.pk}/resume", {})
    said = dispatch.deployment_continue(
        deployment_id=stopped.pk, fingerprint=dispatch.deployment_fingerprint(stopped), rollback=False
    )
    assert Deployment.objects.get().status == "succeeded", said


def worker_recovers_a_queued_deployment(e: Edges) -> None:
    """A queued deployment whose message was lost: a starting worker's recovery runs it, for the
    token that asked for it (not the appliance)."""
    e.api("post", "/deployments", {"bundle_id": e.accepted_bundle()})
    assert dispatch.deployments_recover().endswith("succeeded")


def hook_secret_set_cli(e: Edges) -> None:
    assert e.cli("hook-secret", "set", stdin="ab" * 32) == 0


def hook_secret_rotate_web(e: Edges) -> None:
    e.web("admin", "/manage/hook-secret")


def _hook(e: Edges, body: bytes) -> Any:
    return Client().post(
        "/api/v1/hooks/mender", data=body, content_type="application/json", headers=signed(body)
    )


def webhook_event(e: Edges) -> None:
    assert _hook(e, status_changed(event_id="evt-1")).status_code < 300


def webhook_deployment(e: Edges) -> None:
    body = mender_event("deployment-requested", {"bundle_id": e.accepted_bundle()}, event_id="evt-1")
    assert _hook(e, body).status_code == 202


def audit_prune_cli(e: Edges) -> None:
    assert e.cli("audit", "prune", "--before", "2030-01-01") == 0


Case = tuple[Callable[[Edges], None], str, Callable[[], Actor]]
CASES: list[Case] = [
    (token_create_web, "token.created", lambda: OPERATOR),
    (token_revoke_web, "token.revoked", lambda: OPERATOR),
    (token_create_cli, "token.created", cli_actor),
    (token_revoke_cli, "token.revoked", cli_actor),
    (user_create_web, "user.created", lambda: ADMIN),
    (user_set_role_web, "user.role_set", lambda: ADMIN),
    (user_create_cli, "user.created", cli_actor),
    (user_set_role_cli, "user.role_set", cli_actor),
    (login_web, "user.login", lambda: ADMIN),
    (bundle_upload_api, "bundle.added", lambda: TOKEN),
    (bundle_upload_api, "bundle.accepted", lambda: TOKEN),
    (bundle_upload_web, "bundle.added", lambda: OPERATOR),
    (bundle_add_cli, "bundle.added", cli_actor),
    (bundle_delete_api, "bundle.deleted", lambda: TOKEN),
    (deployment_start_api, "deployment.created", lambda: TOKEN),
    (deployment_start_web, "deployment.created", lambda: OPERATOR),
    (deployment_install_cli, "deployment.created", cli_actor),
    (deployment_install_cli, "step.finished", cli_actor),
    (deployment_install_cli, "deployment.finished", cli_actor),
    (
        deployment_install_update_module,
        "deployment.created",
        lambda: replace(cli_actor(), via="update-module"),
    ),
    (deployment_resume_api, "deployment.resume_requested", lambda: TOKEN),
    (deployment_rollback_api, "deployment.rollback_requested", lambda: TOKEN),
    (deployment_resume_web, "deployment.resume_requested", lambda: OPERATOR),
    (deployment_rollback_web, "deployment.rollback_requested", lambda: OPERATOR),
    (deployment_resume_cli, "deployment.resumed", cli_actor),
    (deployment_rollback_cli, "deployment.rollback", cli_actor),
    (worker_continues_a_requested_resume, "deployment.resumed", lambda: TOKEN),
    (worker_recovers_a_queued_deployment, "deployment.started", lambda: TOKEN),
    (worker_recovers_a_queued_deployment, "deployment.finished", lambda: TOKEN),
    (hook_secret_set_cli, "hook_secret.set", cli_actor),
    (hook_secret_rotate_web, "hook_secret.rotated", lambda: ADMIN),
    (webhook_event, "webhook.received", lambda: WEBHOOK),
    (webhook_deployment, "deployment.created", lambda: WEBHOOK),
    (audit_prune_cli, "audit.pruned", cli_actor),
]


@pytest.mark.parametrize(
    ("drive", "kind", "expected"), CASES, ids=[f"{drive.__name__}-{kind}" for drive, kind, _ in CASES]
)
def test_each_write_path_journals_who_acted(
    edges: Edges, drive: Callable[[Edges], None], kind: str, expected: Callable[[], Actor]
) -> None:
    drive(edges)
    actor = newest(kind)
    assert (actor.kind, actor.name, actor.via) == (expected().kind, expected().name, expected().via)


def test_the_rows_name_the_same_actor_as_the_journal(edges: Edges) -> None:
    bundle_id = edges.accepted_bundle()
    edges.api("post", "/deployments", {"bundle_id": bundle_id})
    deployment = Deployment.objects.get()
    assert Bundle.objects.get(pk=bundle_id).who == deployment.who == TOKEN
    answer = edges.api("get", f"/deployments/{deployment.pk}").json()
    assert answer["actor"] == {"kind": "token", "name": "operator/ci", "label": "token operator/ci"}


def test_going_back_to_the_previous_manifest_over_the_api_keeps_force_and_reason(edges: Edges) -> None:
    """`previous: true` dropped `force` and `reason` (issue 24): they are recorded like a bundle's."""
    assert edges.cli("install", str(edges.bundle(2))) == 0
    assert edges.cli("install", str(edges.bundle(3))) == 0
    Deployment.objects.all().delete()
    answer = edges.api("post", "/deployments", {"previous": True, "force": True, "reason": "field rollback"})
    deployment = Deployment.objects.get(pk=answer.json()["id"])
    assert (deployment.kind, deployment.forced_reason, deployment.who) == (
        "previous",
        "field rollback",
        TOKEN,
    )
    created = JournalEntry.objects.filter(kind="deployment.created").order_by("-seq").first()
    assert created is not None
    assert created.data["forced"] == {"by": TOKEN.as_json(), "reason": "field rollback"}


def test_going_back_with_force_but_no_reason_is_refused(edges: Edges) -> None:
    assert edges.cli("install", str(edges.bundle(2))) == 0
    assert edges.cli("install", str(edges.bundle(3))) == 0
    client = Client(HTTP_AUTHORIZATION=f"Bearer {edges.token}")
    refused = client.post(
        "/api/v1/deployments", json.dumps({"previous": True, "force": True}), content_type="application/json"
    )
    assert refused.json()["error"]["code"] == "force_without_reason", refused.content
    assert Deployment.objects.filter(kind="previous").count() == 0


@pytest.mark.parametrize(
    ("actor", "label"),
    [
        (Actor("user", "alice"), "user alice"),
        (Actor("token", "alice/ci"), "token alice/ci"),
        (Actor("webhook", "evt-1"), "webhook evt-1"),
        (Actor("cli", "root", "cli"), "cli root"),
        (Actor("cli", "root", "update-module"), "cli root (update-module)"),
        (Actor("system", "orchestrator"), "system"),
    ],
)
def test_an_actor_has_one_label(actor: Actor, label: str) -> None:
    assert actor.label == label
    assert Actor.from_json(actor.as_json()) == actor
