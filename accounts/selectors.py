"""Reads for users, tokens and the failed-attempt rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from accounts.models import ApiToken, AuthFailure, Profile, Role, token_digest
from updates.actors import Actor
from updates.selectors.prepared import prepared


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the user, the role in effect (a token's may be lower) and the actor
    that writes record."""

    user: User
    role: Role
    actor: Actor
    token: ApiToken | None = None

    def may(self, role: Role) -> bool:
        return self.role.rank >= role.rank


def role_of(user: AbstractBaseUser | AnonymousUser) -> Role | None:
    """The user's role, read once per user object: a page asks for it several times (the access
    check, the menu), and a request's user object lives as long as the request."""
    if not user.is_authenticated:
        return None
    known: Role | None = getattr(user, "_orch_role", None)
    if known is None:
        role = Profile.objects.filter(user_id=user.pk).values_list("role", flat=True).first()
        known = Role(role) if role else Role.VIEWER
        user._orch_role = known  # type: ignore[attr-defined]  # a cache on this object only
    return known


def session_principal(user: User) -> Principal | None:
    role = role_of(user)
    return Principal(user=user, role=role, actor=Actor("user", user.username)) if role else None


def token_principal(secret: str) -> Principal | None:
    """The token's principal, or None when it is unknown, revoked, expired or its user inactive.
    No failure count is consulted: a valid token works whoever failed from the same address.
    One query on every API request, its SQL compiled once per process (updates/selectors/
    prepared.py: the ORM took most of the request building it); the row is read every time."""
    found = prepared("accounts.token_principal", _token_row, (token_digest(secret),))
    if not found:
        return None
    token_id, name, token_role, expires_at, last_used_at, user_id, username, profile_role = found[0]
    if expires_at is not None and expires_at <= timezone.now():
        return None
    user_role = Role(profile_role) if profile_role else Role.VIEWER
    # The lower of the two: a user demoted after the token was made loses the token's rights too.
    role = min(Role(token_role), user_role, key=lambda r: r.rank)
    # The rows as read (their other columns deferred: read from the database if ever asked for).
    user = User.from_db(DEFAULT_DB_ALIAS, ["id", "username"], [user_id, username])
    user._orch_role = user_role  # type: ignore[attr-defined]  # role_of's cache on this object
    token = ApiToken.from_db(
        DEFAULT_DB_ALIAS,
        ["id", "user_id", "name", "role", "expires_at", "last_used_at"],
        [token_id, user_id, name, token_role, expires_at, last_used_at],
    )
    actor = Actor("token", f"{username}/{name}")
    return Principal(user=user, role=role, actor=actor, token=token)


def _token_row(digest: str) -> QuerySet[ApiToken, Any]:
    return ApiToken.objects.filter(digest=digest, revoked_at__isnull=True, user__is_active=True).values_list(
        "id", "name", "role", "expires_at", "last_used_at", "user_id", "user__username", "user__profile__role"
    )


# The user's columns, in the model's order, then the role from its profile (None without one).
_USER_FIELDS = [f.attname for f in User._meta.concrete_fields]


def user_with_role(user_id: int) -> User | None:
    """A signed-in session's user with its role, in one query (the session's user and its role
    were two), compiled once per process; read on every request, never kept in the process."""
    found = prepared("accounts.user_with_role", _user_row, (user_id,))
    if not found:
        return None
    *columns, profile_role = found[0]
    user = User.from_db(DEFAULT_DB_ALIAS, _USER_FIELDS, columns)
    user._orch_role = Role(profile_role) if profile_role else Role.VIEWER  # type: ignore[attr-defined]
    return user


def _user_row(user_id: int) -> QuerySet[User, Any]:
    return User.objects.filter(pk=user_id).values_list(*_USER_FIELDS, "profile__role")


def _failures(*, address: str, kind: str) -> QuerySet[AuthFailure]:
    since = timezone.now() - timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    return AuthFailure.objects.filter(address=address, kind=kind, at__gte=since)


def token_guessing_blocked(*, address: str) -> bool:
    """Whether `address` sent too many bad tokens lately: its further bad tokens get 429."""
    return bool(_failures(address=address, kind="token").count() >= settings.AUTH_FAILURE_LIMIT)


def login_blocked(*, address: str, account: str) -> bool:
    """Whether `account`'s password failed too often from `address` lately: logging in to that
    account from there is refused for a while; other addresses and accounts are not concerned."""
    failures = _failures(address=address, kind="login").filter(account=account)
    return bool(failures.count() >= settings.AUTH_FAILURE_LIMIT)


@dataclass(frozen=True)
class Block:
    """An address (and, for logins, account) over its failure limit: what `access blocks` shows."""

    address: str
    kind: str
    account: str
    failures: int
    last: datetime


def auth_blocks() -> list[Block]:
    since = timezone.now() - timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    groups = (
        AuthFailure.objects.filter(at__gte=since)
        .values("address", "kind", "account")
        .annotate(n=Count("id"), last=Max("at"))
        .filter(n__gte=settings.AUTH_FAILURE_LIMIT)
        .order_by("address", "kind", "account")
    )
    return [Block(g["address"], g["kind"], g["account"], g["n"], g["last"]) for g in groups]


def user_list() -> QuerySet[User]:
    return User.objects.select_related("profile").order_by("username")


def token_list(*, username: str | None = None) -> QuerySet[ApiToken]:
    tokens = ApiToken.objects.select_related("user").order_by("id")
    return tokens.filter(user__username=username) if username else tokens
