"""Reads for users, tokens and the failed-attempt rate limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiToken, AuthFailure, Profile, Role
from accounts.services import token_digest
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
    if not user.is_authenticated:
        return None
    role = Profile.objects.filter(user_id=user.pk).values_list("role", flat=True).first()
    return Role(role) if role else Role.VIEWER


def session_principal(user: User) -> Principal | None:
    role = role_of(user)
    return Principal(user=user, role=role, actor=Actor("user", user.username)) if role else None


def token_principal(secret: str) -> Principal | None:
    """The token's principal, or None when it is unknown, revoked, expired or its user inactive."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(secret), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None or (token.expires_at is not None and token.expires_at <= timezone.now()):
        return None
    user_role = role_of(token.user) or Role.VIEWER
    # The lower of the two: a user demoted after the token was made loses the token's rights too.
    role = min(Role(token.role), user_role, key=lambda r: r.rank)
    return Principal(
        user=token.user, role=role, actor=Actor("token", f"{token.user.username}/{token.name}"), token=token
    )


def auth_blocked(*, address: str) -> bool:
    since = timezone.now() - timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    return AuthFailure.objects.filter(address=address, at__gte=since).count() >= settings.AUTH_FAILURE_LIMIT


def user_list() -> QuerySet[User]:
    return User.objects.select_related("profile").order_by("username")


def token_list(*, username: str | None = None) -> QuerySet[ApiToken]:
    tokens = ApiToken.objects.select_related("user").order_by("id")
    return tokens.filter(user__username=username) if username else tokens
