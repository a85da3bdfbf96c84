"""The webhook secret (`<datastore>/hook-secret`, mode 0600; 0640 in a shared data store), apart from the receiving side so
the command line does not load Celery just to write a file."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from audit.services import journal_append
from updates.actors import Actor
from updates.engine import hooks as engine

SECRET_FILE = "hook-secret"


def hook_secret_path() -> Path:
    return Path(settings.DATASTORE_DIR) / SECRET_FILE


def hook_secret_set(*, secret: str, actor: Actor) -> None:
    """Raises SecretError when it is not what Mender accepts (hex, 32 to 64 digits).
    `actor`: who, for the journal."""
    engine.secret_write(hook_secret_path(), secret)
    _journal("hook_secret.set", actor)


def hook_secret_rotate(*, actor: Actor) -> str:
    """A new random secret replaces the old one at once; returned so it is shown once."""
    secret = engine.secret_generate()
    engine.secret_write(hook_secret_path(), secret)
    _journal("hook_secret.rotated", actor)
    return secret


def hook_secret_is_set() -> bool:
    """Whether webhooks can be accepted at all (the secret itself is never shown again)."""
    return engine.secret_read(hook_secret_path()) is not None


def _journal(kind: str, actor: Actor) -> None:
    """Who changed the secret, into the audit journal (never the secret; it is a file, so the
    entry follows the write rather than sharing a transaction with it)."""
    journal_append(kind=kind, actor=actor, subject="hook-secret")
