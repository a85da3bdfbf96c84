"""Pages that tell what `status` tells (issue 23): the System page during a stopped deployment
and after a rollback, the wording of where each component ended, one wording per status, the
warning when no worker runs, cancelling a queued deployment, the bundle a re-upload names, and
the small things (start dates, confirmations, the busy link, the favicon)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from devices.models import Component, System
from tests.integration.conftest import DemoSystem
from tests.web.conftest import PLAN, demo_bundle, deployment_record
from updates.actors import Actor
from updates.cli.system import _history_line
from updates.models import Bundle, Deployment, JournalEntry
from updates.selectors import history_report
from updates.services import NotQueued, bundles, deployment_cancel, deployment_execute
from updates.statuses import STATUS_LABELS, component_ended, status_label

pytestmark = pytest.mark.django_db


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _components(versions: dict[str, str]) -> None:
    System.objects.create(pk=1, system_type="system-core")
    for key, version in versions.items():
        ctype, cid = key.split(".")
        Component.objects.create(
            key=key, component_type=ctype, component_id=cid, interface=ctype, version=version
        )


def _stopped_before_commit() -> Deployment:
    """A deployment stopped before ArtifactCommit: every component installed, none committed."""
    deployment = deployment_record("system-core-v2", "stopped", running=True)
    installed = dict.fromkeys(("entered", "downloaded", "install_started"), True)
    position = {
        "phase": "commit",
        "step": "stopped-before-ArtifactCommit",
        "progress": {c["key"]: installed for c in PLAN["components"]},
    }
    Deployment.objects.filter(pk=deployment.pk).update(position=position)
    return deployment


def test_the_system_page_shows_a_stopped_deployment_as_status_does(clients: dict[str, Client]) -> None:
    _components({"gateway.G13": "gateway-v1", "rtos.R998": "rtos-v1", "rtos.R456": "rtos-v1"})
    deployment = _stopped_before_commit()
    page = _text(clients["operator"].get("/"))
    box = re.search(r'data-key="gateway.G13".*?</li>', page)
    assert box and 'class="version">gateway-v2</dd>' in box.group(0)
    assert "new, not committed" in box.group(0) and "(committed: gateway-v1)" in box.group(0)
    assert "Stopped before <strong>ArtifactCommit</strong>" in page
    assert f'action="/deployments/{deployment.pk}/resume"' in page
    rollback = re.search(
        rf'<form method="post" action="/deployments/{deployment.pk}/rollback" data-confirm="[^"]+"', page
    )
    assert rollback, "Roll back asks for a confirmation"
    viewer = _text(clients["viewer"].get("/"))
    assert "new, not committed" in viewer and "Roll back</button>" not in viewer


def test_the_system_page_tells_the_last_outcome_and_where_each_component_ended(
    clients: dict[str, Client],
) -> None:
    _components({"gateway.G13": "gateway-v1", "rtos.R998": "rtos-v1", "rtos.R456": "rtos-v1"})
    rolled = deployment_record("system-core-v2", "rolled_back", failed="rtos.R456")
    Deployment.objects.filter(pk=rolled.pk).update(reason="rtos.R456: ArtifactCommit exited with 1")
    page = _text(clients["viewer"].get("/"))
    last = re.search(r'id="last-deployment".*?</section>', page)
    assert last, page
    text = last.group(0)
    assert ">Rolled back</span>" in text and "rtos.R456: ArtifactCommit exited with 1" in text
    assert "<strong>gateway.G13</strong>: back on gateway-v1; gateway-v2 rolled back" in text
    assert "rtos.R456</strong>: back on rtos-v1; rtos-v2 rolled back (failed in ArtifactCommit)" in text
    assert "gateway-v1 → gateway-v2" not in text
    timeline = _text(clients["viewer"].get(f"/deployments/{rolled.pk}/"))
    assert "back on gateway-v1; gateway-v2 rolled back" in timeline
    assert "gateway-v1 → gateway-v2" not in timeline


def test_a_running_deployment_still_reads_from_to_on_its_page(clients: dict[str, Client]) -> None:
    running = deployment_record("system-core-v2", "running", running=True)
    assert "gateway-v1 → gateway-v2" in _text(clients["viewer"].get(f"/deployments/{running.pk}/"))


def test_it_words_each_status_once_on_pages_and_on_the_command_line(clients: dict[str, Client]) -> None:
    deployment_record("system-core-v2", "rolled_back")
    history = _text(clients["viewer"].get("/history/"))
    assert ">Rolled back</span>" in history and '<option value="rolled_back">Rolled back</option>' in history
    assert "rolled_back</span>" not in history and "Rolled Back" not in history
    assert " rolled back " in _history_line(history_report(limit=1)[0])
    assert status_label("reboot_required") == "Reboot required"
    assert status_label("waiting_approval") == "Waiting for approval"
    assert status_label("some_new_state") == "Some new state"  # never blank
    assert set(Deployment.Status.values) <= set(STATUS_LABELS)
    assert set(Bundle.Status.values) <= set(STATUS_LABELS)


def test_it_says_where_a_component_ended_in_every_outcome() -> None:
    def said(outcome: str, **more: Any) -> str:
        return component_ended({"outcome": outcome, "from": "v1", "to": "v2", "failed_in": None, **more})

    assert said("rolled back") == "back on v1; v2 rolled back"
    assert said("failed in ArtifactInstall, rolled back", failed_in="ArtifactInstall") == (
        "back on v1; v2 rolled back (failed in ArtifactInstall)"
    )
    assert said("installed") == "now on v2 (v1 before)"
    assert said("installed, not committed", uncommitted=True) == "on v2 (new, not committed; v1 before)"
    assert said("rollback FAILED").startswith("version unknown")
    assert said("NOT rolled back") == "version unknown: v2 was not rolled back"
    assert said("not installed") == "still on v1; v2 not installed"
    assert said("skipped (already v1)") == "unchanged on v1"


def test_the_history_dates_a_deployment_by_its_start(clients: dict[str, Client]) -> None:
    deployment = deployment_record("system-core-v2", "succeeded", days_ago=3)
    started = deployment.started_at
    assert started is not None
    Deployment.objects.filter(pk=deployment.pk).update(created_at=started.replace(year=2020))  # queued
    page = _text(clients["viewer"].get("/history/"))
    assert started.strftime("%Y-%m-%d") in page and "2020-" not in page
    assert "Started</th>" in page
    assert _history_line(history_report(limit=1)[0]).startswith(f"#{deployment.pk} {started:%Y-}")


def test_a_queued_deployment_warns_without_a_worker_and_can_be_cancelled(clients: dict[str, Client]) -> None:
    queued = deployment_record("system-core-v2", "queued", running=True)
    page = _text(clients["operator"].get(f"/deployments/{queued.pk}/"))
    assert 'id="no-worker"' in page and "this deployment waits until one starts" in page
    assert f'action="/deployments/{queued.pk}/cancel" data-confirm=' in page
    assert 'id="no-worker"' in _text(clients["viewer"].get("/"))
    assert clients["viewer"].post(f"/deployments/{queued.pk}/cancel").status_code == 403

    done = _text(clients["operator"].post(f"/deployments/{queued.pk}/cancel", follow=True))
    assert f"Deployment {queued.pk} cancelled before it started." in done
    queued.refresh_from_db()
    assert (queued.status, queued.slot, queued.reason) == (
        "rejected",
        None,
        "cancelled by user operator before it started",
    )
    entry = JournalEntry.objects.filter(kind="deployment.finished", subject=f"deployment:{queued.pk}").last()
    assert entry is not None and entry.actor is not None
    assert entry.actor["name"] == "operator" and entry.data["status"] == "rejected"

    again = _text(clients["operator"].post(f"/deployments/{queued.pk}/cancel", follow=True))
    assert f"Cannot cancel: deployment {queued.pk} is rejected, not queued" in again


def test_it_answers_a_live_worker_without_the_warning(clients: dict[str, Client], worker_beat: None) -> None:
    queued = deployment_record("system-core-v2", "queued", running=True)
    assert 'id="no-worker"' not in _text(clients["operator"].get(f"/deployments/{queued.pk}/"))
    assert 'id="no-worker"' not in _text(clients["operator"].get("/"))


def test_a_busy_refusal_links_to_the_running_deployment(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    with open(demo_bundle(web_demo, 2), "rb") as fh:
        clients["operator"].post("/bundles/upload", {"file": fh})
    bundle = Bundle.objects.get()
    stopped = deployment_record("system-core-v1", "stopped")
    page = _text(clients["operator"].post(f"/bundles/{bundle.pk}/deploy", {"confirm": "on"}, follow=True))
    assert (
        f'Not started: <a href="/deployments/{stopped.pk}/">deployment {stopped.pk}</a> (system-core-v1) is stopped.'
        in page
    )
    assert "pid" not in page


def test_an_identical_upload_names_the_bundle_it_already_is(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    path = demo_bundle(web_demo, 2)
    for _ in range(2):
        with open(path, "rb") as fh:
            response = clients["operator"].post("/bundles/upload", {"file": fh}, follow=True)
    first = Bundle.objects.get()  # one bundle, not two
    assert response.redirect_chain[-1][0] == f"/bundles/{first.pk}/"
    assert f"This file is already bundle {first.pk}: nothing was added." in _text(response)


def test_a_rejected_bundle_says_why_it_cannot_be_deployed(
    clients: dict[str, Client], web_demo: DemoSystem, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: manifest\n")
    with open(broken, "rb") as fh:
        clients["operator"].post("/bundles/upload", {"file": fh})
    bundle = Bundle.objects.get()
    assert bundle.status == "rejected"
    page = _text(clients["operator"].post(f"/bundles/{bundle.pk}/deploy", {"confirm": "on"}, follow=True))
    assert f"Not started: bundle {bundle.pk} was rejected, it cannot be deployed: " in page


def test_it_serves_a_favicon(clients: dict[str, Client]) -> None:
    answer = clients["anonymous"].get("/favicon.ico")
    assert answer.status_code == 200 and answer["Content-Type"] == "image/x-icon"
    assert answer.getvalue()[:4] == b"\x00\x00\x01\x00"  # an ICO header


# ----- the same rules through the API ------------------------------------------------------------


def _upload_api(client: Client, path: Path) -> Any:
    with open(path, "rb") as fh:
        return client.post("/api/v1/bundles", {"file": fh})


def test_the_api_answers_an_identical_upload_with_the_bundle_it_already_is(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    path = demo_bundle(web_demo, 2)
    first = _upload_api(clients["operator"], path)
    again = _upload_api(clients["operator"], path)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "accepted"
    assert Bundle.objects.count() == 1
    assert _upload_api(clients["operator"], demo_bundle(web_demo, 3)).status_code == 201  # other bytes


def test_the_api_refuses_to_deploy_a_rejected_bundle_with_its_reason(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    broken = web_demo.root / "broken.yaml"
    broken.write_text("kind: manifest\n")
    bundle_id = _upload_api(clients["operator"], broken).json()["id"]
    answer = clients["operator"].post(
        "/api/v1/deployments", {"bundle_id": bundle_id}, content_type="application/json"
    )
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "bundle_not_accepted"
    assert error["message"].startswith(f"bundle {bundle_id} was rejected, it cannot be deployed: ")
    assert Deployment.objects.count() == 0
    missing = clients["operator"].post(
        "/api/v1/deployments", {"bundle_id": 999}, content_type="application/json"
    )
    assert missing.status_code == 404


def test_the_api_starts_no_deployment_that_would_change_nothing(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    bundle_id = _upload_api(clients["operator"], demo_bundle(web_demo, 1)).json()["id"]  # what runs
    answer = clients["operator"].post(
        "/api/v1/deployments", {"bundle_id": bundle_id}, content_type="application/json"
    )
    assert answer.status_code == 409, answer.content
    assert answer.json()["error"]["code"] == "nothing_to_deploy"
    assert "already runs every version of system-core-v1" in answer.json()["error"]["message"]
    assert Deployment.objects.count() == 0
    page = _text(clients["operator"].get(f"/bundles/{bundle_id}/"))
    assert "Nothing to deploy" in page and "Deploy</button>" not in page  # the page's rule too


def test_the_api_says_which_body_it_wanted(clients: dict[str, Client]) -> None:
    answer = clients["operator"].post("/api/v1/deployments", {"bundle": 1}, content_type="application/json")
    assert answer.status_code == 422
    assert (
        answer.json()["error"]["message"]
        == "invalid request: body: give exactly one of bundle_id or previous: true"
    )
    paging = clients["viewer"].get("/api/v1/deployments?page=0")
    assert paging.json()["error"]["message"].startswith("invalid request: query.page: ")


def test_the_api_cancels_a_queued_deployment_for_operators(clients: dict[str, Client]) -> None:
    queued = deployment_record("system-core-v2", "queued", running=True)
    assert clients["viewer"].post(f"/api/v1/deployments/{queued.pk}/cancel").status_code == 403
    answer = clients["operator"].post(f"/api/v1/deployments/{queued.pk}/cancel")
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["reason"]) == (
        "rejected",
        "cancelled by user operator before it started",
    )
    again = clients["operator"].post(f"/api/v1/deployments/{queued.pk}/cancel")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "not_queued")
    assert clients["operator"].post("/api/v1/deployments/999/cancel").status_code == 404


def test_a_reinstalled_file_names_its_bundle_and_a_rejected_one_is_checked_again(
    web_demo: DemoSystem,
) -> None:
    cli = Actor("cli", "root")
    path = demo_bundle(web_demo, 2)
    first = bundles.bundle_add_file(path=path, actor=cli)
    assert bundles.bundle_add_file(path=path, actor=cli).pk == first.pk  # `install FILE` again
    broken = web_demo.root / "broken.yaml"
    broken.write_text("kind: manifest\n")
    rejected = bundles.bundle_add_file(path=broken, actor=cli)
    assert bundles.bundle_add_file(path=broken, actor=cli).pk != rejected.pk
    assert Bundle.objects.count() == 3


def test_the_api_refuses_a_busy_start_before_asking_any_component(
    clients: dict[str, Client], web_demo: DemoSystem
) -> None:
    bundle_id = _upload_api(clients["operator"], demo_bundle(web_demo, 2)).json()["id"]
    stopped = deployment_record("system-core-v1", "stopped")
    calls = web_demo.calls()
    answer = clients["operator"].post(
        "/api/v1/deployments", {"bundle_id": bundle_id}, content_type="application/json"
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "busy")
    assert f"deployment {stopped.pk} (system-core-v1) is stopped" in answer.json()["error"]["message"]
    assert web_demo.calls() == calls  # no interface was asked while one is in progress


def test_a_cancel_and_a_worker_claim_exclude_each_other(clients: dict[str, Client]) -> None:
    operator = Actor("user", "operator")
    queued = deployment_record("system-core-v2", "queued", running=True)
    deployment_cancel(deployment_id=queued.pk, actor=operator)
    late = deployment_execute(deployment_id=queued.pk, actor=operator)  # the worker's message, after
    assert late.status == "rejected" and late.owner == "" and late.started_at == queued.started_at
    claimed = deployment_record("system-core-v3", "running", running=True)  # a worker took it first
    with pytest.raises(NotQueued, match="is running, not queued"):
        deployment_cancel(deployment_id=claimed.pk, actor=operator)
    assert Deployment.objects.get(pk=claimed.pk).status == "running"
