"""Who may do what over HTTP: one role per user, API tokens, and failed attempts per address."""

from __future__ import annotations

import enum
import hashlib

from django.conf import settings
from django.db import models


def token_digest(secret: str) -> str:
    """How a token is kept: only its SHA-256 (a token is random, so no salt or slow hash is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Role(enum.StrEnum):
    """Ordered: each role may do everything the ones before it may."""

    VIEWER = "viewer"  # read
    OPERATOR = "operator"  # upload, plan, deploy, resume, roll back
    ADMIN = "admin"  # users, tokens, hook secret, settings

    @property
    def rank(self) -> int:
        return list(Role).index(self)


ROLE_CHOICES = [(r.value, r.name.title()) for r in Role]


class Profile(models.Model):
    """The one role of a Django user (a row, not groups: exactly one role is a column, not a rule)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=10, choices=ROLE_CHOICES, default=Role.VIEWER)


class ApiToken(models.Model):
    """A bearer token: only its sha256 is stored; the token itself is shown once when created."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=ROLE_CHOICES)
    prefix = models.CharField(max_length=12)  # the first characters, to recognise a token in lists
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="token_name_per_user")]


class AuthFailure(models.Model):
    """One failed login or bad token: bad tokens count per client address, failed logins per
    (address, account) so nobody can lock someone else's account by failing it (docs/security.md)."""

    address = models.CharField(max_length=64)
    kind = models.CharField(max_length=10)  # login | token
    account = models.CharField(max_length=150, blank=True, default="")  # the username tried (logins)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["address", "at"]),
            models.Index(fields=["address", "account", "at"], name="authfailure_pair_at"),
        ]
