"""Reads for users, tokens and the failed-attempt rate limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import Count, QuerySet, Subquery
from django.db.models.functions import Coalesce
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
    if not user.is_authenticated:
        return None
    role = Profile.objects.filter(user_id=user.pk).values_list("role", flat=True).first()
    return Role(role) if role else Role.VIEWER


def session_principal(user: User) -> Principal | None:
    role = role_of(user)
    return Principal(user=user, role=role, actor=Actor("user", user.username)) if role else None


def token_principal(secret: str, *, address: str) -> tuple[Principal | None, bool]:
    """(the token's principal or None when it is unknown, revoked, expired or its user inactive;
    whether `address` is over its failure limit). One query for a good token: this runs on
    every API request."""
    failures = _failures(address).values("address").annotate(n=Count("id")).values("n")
    token = (
        ApiToken.objects.select_related("user__profile")
        .annotate(failures=Coalesce(Subquery(failures[:1]), 0))
        .filter(digest=token_digest(secret), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None, auth_blocked(address=address)
    blocked = token.failures >= settings.AUTH_FAILURE_LIMIT
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return None, blocked
    profile = getattr(token.user, "profile", None)
    user_role = Role(profile.role) if profile else Role.VIEWER
    # The lower of the two: a user demoted after the token was made loses the token's rights too.
    role = min(Role(token.role), user_role, key=lambda r: r.rank)
    actor = Actor("token", f"{token.user.username}/{token.name}")
    return Principal(user=token.user, role=role, actor=actor, token=token), blocked


def _failures(address: str) -> QuerySet[AuthFailure]:
    since = timezone.now() - timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    return AuthFailure.objects.filter(address=address, at__gte=since)


def auth_blocked(*, address: str) -> bool:
    return bool(_failures(address).count() >= settings.AUTH_FAILURE_LIMIT)


def user_list() -> QuerySet[User]:
    return User.objects.select_related("profile").order_by("username")


def token_list(*, username: str | None = None) -> QuerySet[ApiToken]:
    tokens = ApiToken.objects.select_related("user").order_by("id")
    return tokens.filter(user__username=username) if username else tokens
