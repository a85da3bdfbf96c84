from __future__ import annotations

from typing import Any

import pytest

from updates.actors import Actor

SETUP = Actor("cli", "test-setup")


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
