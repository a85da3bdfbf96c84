"""The webhook secret (`<datastore>/hook-secret`, mode 0600), apart from the receiving side so
the command line does not load Celery just to write a file."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from updates.engine import hooks as engine

SECRET_FILE = "hook-secret"


def hook_secret_path() -> Path:
    return Path(settings.DATASTORE_DIR) / SECRET_FILE


def hook_secret_set(*, secret: str) -> None:
    """Raises SecretError when it is not what Mender accepts (hex, 32 to 64 digits)."""
    engine.secret_write(hook_secret_path(), secret)


def hook_secret_rotate() -> str:
    """A new random secret replaces the old one at once; returned so it is shown once."""
    secret = engine.secret_generate()
    engine.secret_write(hook_secret_path(), secret)
    return secret
