from __future__ import annotations

from typing import Any

import pytest

from updates.actors import Actor

SETUP = Actor("cli", "test-setup")


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# The web tests' signed-in clients and demo system, for uploads and pages here.
from tests.integration.conftest import migrated_db  # noqa: E402
from tests.web.conftest import clients, demo_bundle, web_demo  # noqa: E402

__all__ = ["SETUP", "clients", "demo_bundle", "fast_hasher", "migrated_db", "web_demo"]
