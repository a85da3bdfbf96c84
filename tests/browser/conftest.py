"""The browser tests' real parts: the API tests' appliance and gunicorn server (demo system,
Redis, a real Celery worker, one shared database file), Debian's chromium driven by Playwright
(no browser download), and a signed-in page per role."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from accounts import services
from accounts.models import Role
from tests.api.conftest import Web, appliance, broker, demo, migrated_db, web
from tests.worker.conftest import Appliance
from updates.actors import SYSTEM

__all__ = ["appliance", "broker", "demo", "migrated_db", "web"]

CHROMIUM = os.getenv("ORCH_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "browser-test-password"
# Tests never write tracked files: the pages' pictures go to a scratch folder unless
# `bin/screenshots` asks for docs/screenshots/ (ORCH_SCREENSHOTS_DIR).
SCREENSHOTS = Path(os.environ.get("ORCH_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="orch-screenshots-"))


@pytest.fixture
def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the test's own ORM reads are plain
    # blocking calls all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def live(appliance: Appliance, web: Web, transactional_db: None) -> Web:
    """The appliance with a worker, served by gunicorn, with a user per role."""
    for role in Role:
        services.user_create(username=role.value, role=role, password=PASSWORD, actor=SYSTEM)
    appliance.start_worker()
    return web


@pytest.fixture
def sign_in(chromium: Browser, live: Web) -> Callable[[str], Page]:
    def open_as(username: str) -> Page:
        page = chromium.new_page(
            viewport={"width": 1280, "height": 800}, base_url=f"http://127.0.0.1:{live.port}"
        )
        page.set_default_timeout(30_000)
        page.goto("/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        return page

    return open_as
