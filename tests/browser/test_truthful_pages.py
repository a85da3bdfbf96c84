"""The pages that tell the truth (issue 23) in a real browser: the System page during a
deployment the command line stopped before ArtifactCommit and after the rollback asked for on
it (with its confirmation), and, with no worker alive, the warning, a deployment cancelled
while queued, and the bundle list that follows an upload and names a re-uploaded file."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import SCREENSHOTS
from tests.integration.conftest import CLI
from tests.web.conftest import demo_bundle
from tests.worker.conftest import Appliance
from updates.models import Deployment


def test_the_system_page_follows_a_stopped_deployment_and_its_rollback(
    sign_in: Callable[[str], Page], appliance: Appliance
) -> None:
    for version, stop in ((2, []), (3, ["--stop-before", "ArtifactCommit"])):
        manifest = str(appliance.system.system / f"manifest-v{version}.yaml")
        done = subprocess.run(
            [CLI, "install", manifest, *stop], env=appliance.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
    stopped = Deployment.objects.get(status="stopped")

    page = sign_in("operator")
    page.goto("/")
    box = page.locator('.box[data-key="gateway.G13"]')
    expect(box.locator(".version")).to_have_text("gateway-v3")
    expect(box).to_contain_text("new, not committed (committed: gateway-v2)")
    card = page.locator("#in-progress")
    expect(card).to_contain_text("Stopped before ArtifactCommit")
    expect(card.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.locator("#no-worker")).to_have_count(0)  # the worker beats
    page.screenshot(path=SCREENSHOTS / "system-stopped.png", full_page=True)

    questions: list[str] = []

    def answer(dialog: Dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    card.get_by_role("button", name="Roll back").click()
    assert questions and questions[0].startswith(f"Roll back deployment {stopped.pk}?")
    page.wait_for_timeout(300)
    assert Deployment.objects.get(pk=stopped.pk).requests == []  # dismissed: nothing asked

    page.once("dialog", lambda d: answer(d, True))
    card.get_by_role("button", name="Roll back").click()
    page.wait_for_url(f"**/deployments/{stopped.pk}/")
    expect(page.locator("#run-status")).to_have_text("Rolled back", timeout=60_000)
    row = page.locator('.row[data-key="gateway.G13"] .row-label')
    expect(row).to_contain_text("back on gateway-v2; gateway-v3 rolled back", timeout=20_000)
    page.screenshot(path=SCREENSHOTS / "deployment-rolled-back.png", full_page=True)

    page.goto("/")
    last = page.locator("#last-deployment")
    expect(last).to_contain_text("Rolled back")
    expect(last).to_contain_text("gateway.G13: back on gateway-v2; gateway-v3 rolled back")
    expect(page.locator("#in-progress")).to_have_count(0)
    expect(page.locator('.box[data-key="gateway.G13"] .version')).to_have_text("gateway-v2")
    page.screenshot(path=SCREENSHOTS / "system-rolled-back.png", full_page=True)


def test_without_a_worker_the_pages_say_so_and_a_queued_deployment_is_cancelled(
    sign_in: Callable[[str], Page], appliance: Appliance
) -> None:
    page = sign_in("operator")
    path = demo_bundle(appliance.system, 2)
    page.goto("/bundles/")
    expect(page.locator("#bundle-list")).to_contain_text("No bundle yet")
    for _ in range(2):  # the second time: the same file, which is that bundle already
        page.get_by_label("Bundle file").set_input_files(path)
        page.get_by_role("button", name="Upload").click()
        expect(page.locator("#bundle-list tbody tr")).to_have_count(1)
    expect(page.locator("#upload-status")).to_contain_text("Already uploaded: nothing added.")
    expect(page.locator("#bundle-list")).not_to_contain_text("No bundle yet")  # no reload needed

    for worker in appliance.workers:
        worker.stop()
    page.locator("#uploaded-bundle").click()
    expect(page.locator("#no-worker")).to_contain_text("a deployment you start here waits until one starts")
    page.get_by_label("I have read the plan: deploy it now").check()
    page.get_by_role("button", name="Deploy").click()
    page.wait_for_url(re.compile(r"/deployments/\d+/$"))
    expect(page.locator("#run-status")).to_have_text("Queued")
    expect(page.locator("#no-worker")).to_contain_text("celery -A worker worker")
    page.screenshot(path=SCREENSHOTS / "deployment-queued-no-worker.png", full_page=True)

    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#run-status")).to_have_text("Rejected")
    expect(page.locator(".reason")).to_have_text("cancelled by user operator before it started")
    page.goto("/history/")
    expect(page.locator("table.table tbody tr")).to_contain_text("Rejected")
