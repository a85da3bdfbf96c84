"""Reads for users, tokens and the failed-attempt rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from accounts.models import ApiToken, AuthFailure, Profile, Role, token_digest
from updates.actors import Actor


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
    One query: this runs on every API request."""
    token = (
        ApiToken.objects.select_related("user__profile")
        .filter(digest=token_digest(secret), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None or (token.expires_at is not None and token.expires_at <= timezone.now()):
        return None
    profile = getattr(token.user, "profile", None)
    user_role = Role(profile.role) if profile else Role.VIEWER
    # The lower of the two: a user demoted after the token was made loses the token's rights too.
    role = min(Role(token.role), user_role, key=lambda r: r.rank)
    actor = Actor("token", f"{token.user.username}/{token.name}")
    return Principal(user=token.user, role=role, actor=actor, token=token)


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
