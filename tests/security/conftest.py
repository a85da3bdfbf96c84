from __future__ import annotations

from typing import Any

import pytest

from updates.actors import Actor

SETUP = Actor("cli", "test-setup")


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# The web tests' signed-in clients and demo system, for uploads and pages here; the webhook
# tests' hook secret, demo system and loopback file server, for the SSRF tests.
from tests.hooks.conftest import file_server, secret, system  # noqa: E402
from tests.integration.conftest import migrated_db  # noqa: E402
from tests.web.conftest import clients, demo_bundle, web_demo  # noqa: E402
from tests.worker.conftest import demo  # noqa: E402

__all__ = [
    "SETUP",
    "clients",
    "demo",
    "demo_bundle",
    "fast_hasher",
    "file_server",
    "migrated_db",
    "secret",
    "system",
    "web_demo",
]
