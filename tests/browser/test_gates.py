"""docs/policy.md in a real browser against the appliance with a real worker: a deployment waits
at the gate before ArtifactCommit, the operator approves it from its page; the next one is
approved over the API with an operator's token."""

from __future__ import annotations

import time
from collections.abc import Callable

from playwright.sync_api import Page, expect

from accounts import services
from accounts.models import Role
from tests.api.conftest import Web
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_ui_flows import _deploy, _upload
from tests.web.conftest import demo_bundle
from tests.worker.conftest import Appliance
from updates.actors import SYSTEM
from updates.models import Deployment

GATE = "gates:\n  - before: ArtifactCommit\n    timeout: 10m\n    on_timeout: rollback\n"


def _waiting(deployment_id: int) -> None:
    deadline = time.monotonic() + 60
    while Deployment.objects.get(pk=deployment_id).status != "waiting_approval":
        assert time.monotonic() < deadline, "it never waited at the gate"
        time.sleep(0.2)


def test_the_operator_approves_the_gate_from_the_page_and_over_the_api(
    sign_in: Callable[[str], Page], live: Web, appliance: Appliance
) -> None:
    demo = appliance.system
    (demo.datastore / "policy.yaml").write_text(GATE)
    page = sign_in("operator")
    _deploy(page, _upload(page, demo_bundle(demo, 2)))
    gate = page.locator("#gate")
    expect(gate).to_contain_text("Waiting for approval before ArtifactCommit", timeout=60_000)
    expect(gate).to_contain_text("(then: rollback)")
    page.screenshot(path=SCREENSHOTS / "deployment-gate.png", full_page=True)
    assert demo.versions()["R456"] == "rtos-v2" and "ArtifactCommit" not in demo.states("R456")
    page.get_by_label("Reason (recorded)").fill("bench test passed")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=60_000)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    first = Deployment.objects.order_by("-pk").first()
    assert first is not None and first.status == "succeeded"

    token = services.token_create(username="operator", role=Role.OPERATOR, name="gate", actor=SYSTEM).secret
    viewer = services.token_create(username="viewer", role=Role.VIEWER, name="gate", actor=SYSTEM).secret
    _deploy(page, _upload(page, demo_bundle(demo, 3)))
    second = Deployment.objects.order_by("-pk").first()
    assert second is not None and second.pk != first.pk
    _waiting(second.pk)
    path = f"/deployments/{second.pk}/approve"
    assert live.request("POST", path, token=viewer, body={}).status == 403
    answer = live.request("POST", path, token=token, body={"reason": "over the API"})
    assert answer.status == 200, answer.body
    assert answer.json()["gate"]["decision"] == "approved"
    again = live.request("POST", path, token=token, body={})
    assert again.status == 409 and again.json()["error"]["code"] == "not_waiting"
    assert appliance.wait_finished(second.pk).status == "succeeded"
    assert demo.versions() == {"G13": "gateway-v3", "R456": "rtos-v3", "R998": "rtos-v3"}
