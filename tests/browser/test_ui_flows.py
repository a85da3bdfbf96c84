"""The web UI in a real browser against the appliance served by gunicorn with a real worker:
upload with a progress bar, the plan, a live deployment that turns green without reloading,
a failing board rolled back, the audit download, and what a viewer may not do."""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.api.conftest import Web
from tests.browser.conftest import SCREENSHOTS
from tests.web.conftest import demo_bundle
from tests.worker.conftest import Appliance


def _upload(page: Page, bundle: Path) -> str:
    """Upload through the page's form; returns the bundle page's address."""
    page.goto("/bundles/")
    # Every value the progress bar takes, as the page's script sets it.
    page.evaluate(
        """() => { const bar = document.querySelector('#upload-status [role=progressbar]');
                   window.seen = [];
                   new MutationObserver(() => window.seen.push(Number(bar.getAttribute('aria-valuenow'))))
                     .observe(bar, {attributes: true}); }"""
    )
    page.get_by_label("Bundle file").set_input_files(bundle)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-status")).to_contain_text("Accepted.")
    expect(page.locator("#upload-status [role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    seen = page.evaluate("() => window.seen")
    assert seen and seen[-1] == 100 and seen == sorted(seen), seen
    return page.locator("#uploaded-bundle").get_attribute("href") or ""


def _deploy(page: Page, bundle_url: str) -> None:
    page.goto(bundle_url)
    expect(page.get_by_role("heading", name="Plan")).to_be_visible()
    page.get_by_label("I have read the plan: deploy it now").check()
    page.get_by_role("button", name="Deploy").click()
    page.wait_for_url(re.compile(r"/deployments/\d+/$"))
    page.evaluate("() => { window.notReloaded = true; }")


def _versions(page: Page) -> dict[str, str]:
    page.goto("/")
    boxes = page.locator(".box")
    return {
        boxes.nth(i).locator(".box-title strong").inner_text(): boxes.nth(i).locator(".version").inner_text()
        for i in range(boxes.count())
    }


def _expect_versions(page: Page, want: dict[str, str]) -> None:
    """The System page shows `want`: the components' rows are written right after the run's last
    queries end, so a page loaded in between may still show the versions before."""
    deadline = time.monotonic() + 15
    while (seen := _versions(page)) != want and time.monotonic() < deadline:
        page.wait_for_timeout(300)
    assert seen == want


def test_it_deploys_v2_then_rolls_back_v3_live_in_the_browser(
    sign_in: Callable[[str], Page], live: Web, appliance: Appliance, tmp_path: Path
) -> None:
    page = sign_in("operator")
    demo = appliance.system

    v2 = _upload(page, demo_bundle(demo, 2))
    page.locator("#uploaded-bundle").click()
    plan = page.locator("section", has=page.get_by_role("heading", name="Plan"))
    expect(plan.locator("tr", has_text="G13")).to_contain_text(re.compile(r"gateway-v1\s+→\s+gateway-v2"))
    expect(plan.locator("tr", has_text="R456")).to_contain_text(re.compile(r"rtos-v1\s+→\s+rtos-v2"))
    page.screenshot(path=SCREENSHOTS / "bundle-plan.png", full_page=True)
    _deploy(page, v2)
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=60_000)
    assert page.evaluate("() => window.notReloaded") is True  # the events stream updated it
    expect(page.locator('.blocks [data-status="running"]')).to_have_count(0, timeout=20_000)
    expect(page.locator('.blocks [data-status="failed"]')).to_have_count(0)
    assert page.locator('.blocks [data-status="done"]').count() >= 3 * 4
    page.locator('.row[data-key="rtos.R456"] [data-status="done"]', has_text="ArtifactCommit").click()
    expect(page.locator("#step-panel")).to_contain_text("Exit code")
    page.screenshot(path=SCREENSHOTS / "deployment.png", full_page=True)
    _expect_versions(page, {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"})
    page.screenshot(path=SCREENSHOTS / "system.png", full_page=True)

    demo.fail("R456", "ArtifactCommit")
    _deploy(page, _upload(page, demo_bundle(demo, 3)))
    expect(page.locator("#run-status")).to_have_text("Rolled back", timeout=60_000)
    assert page.evaluate("() => window.notReloaded") is True
    expect(page.locator('.row[data-key="rtos.R456"] [data-status="failed"]')).to_have_text(
        re.compile("ArtifactCommit")
    )
    assert page.locator('.blocks [data-status="rollback"]').count() >= 3
    # The queries that refresh the components run after the status is final; the page follows them.
    expect(page.locator('.blocks [data-status="running"]')).to_have_count(0, timeout=20_000)
    page.screenshot(path=SCREENSHOTS / "deployment-rollback.png", full_page=True)
    _expect_versions(page, {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"})

    page.goto("/history/")
    expect(page.locator("table.table tbody tr")).to_have_count(2)
    page.screenshot(path=SCREENSHOTS / "history.png", full_page=True)

    page.goto("/audit/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    saved = tmp_path / "audit.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(saved.open()))  # one row per deployment and component
    firsts = [r for r in rows if r["component"] == "rtos.R456"]
    assert [(r["manifest_from"], r["manifest_to"], r["outcome"], r["actor"]) for r in firsts] == [
        ("", "system-core-v2", "succeeded", "user operator"),
        ("system-core-v2", "system-core-v3", "rolled_back", "user operator"),
    ]
    assert firsts[1]["version_after"] == "rtos-v2"
    assert firsts[0]["bundle_sha256"] and firsts[1]["bundle_sha256"] != firsts[0]["bundle_sha256"]


def test_a_viewer_sees_no_deploy_button_and_cannot_post_anyway(
    sign_in: Callable[[str], Page], appliance: Appliance
) -> None:
    operator = sign_in("operator")
    bundle_url = _upload(operator, demo_bundle(appliance.system, 2))

    page = sign_in("viewer")
    page.goto(bundle_url)
    expect(page.get_by_role("heading", name="Plan")).to_be_visible()
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    expect(page.get_by_role("button", name="Upload")).to_have_count(0)
    token = page.locator("[name=csrfmiddlewaretoken]").first.get_attribute("value")
    answer = page.request.post(
        bundle_url + "deploy", form={"confirm": "on", "csrfmiddlewaretoken": token or ""}
    )
    assert answer.status == 403
    api = page.request.post(
        "/api/v1/deployments", data={"bundle_id": 1}, headers={"X-CSRFToken": token or ""}
    )
    assert api.status == 403
