"""Writes for users, roles, API tokens and failed attempts (`<entity>_<verb>`, keyword-only)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.addresses import client_address
from accounts.models import ApiToken, AuthFailure, Profile, Role, token_digest
from accounts.names import token_name_problem, user_name_problem
from audit.services import journal_append
from updates.actors import Actor
from updates.engine.errors import InvalidInput

TOKEN_PREFIX = "orch_"


class AccessError(InvalidInput):
    """A refused user or token change (unknown user, role too high, duplicate name); nothing changed."""

    code = "invalid_access_change"


@dataclass(frozen=True)
class NewToken:
    row: ApiToken
    secret: str  # shown once; only its hash is kept


@transaction.atomic
def user_create(*, username: str, role: Role, password: str, actor: Actor) -> User:
    _name_check(user_name_problem(username), username)
    if User.objects.filter(username=username).exists():
        raise AccessError(f"user {username!r} already exists")
    user = User.objects.create_user(username=username, password=password)
    Profile.objects.create(user=user, role=role)
    _journal("user.created", actor, f"user:{username}", {"role": str(role)})
    return user


@transaction.atomic
def user_set_role(*, username: str, role: Role, actor: Actor) -> User:
    """Lowering a role lowers the user's tokens with it: a token never outranks its user."""
    user = _user(username)
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    for token in user.api_tokens.all():
        if Role(token.role).rank > role.rank:
            token.role = role
            token.save(update_fields=["role"])
    _journal("user.role_set", actor, f"user:{username}", {"role": str(role)})
    return user


def _name_check(problem: str | None, name: str) -> None:
    if problem:
        raise AccessError(f"{name!r} refused: {problem}")


def _journal(kind: str, actor: Actor, subject: str, data: dict[str, object]) -> None:
    """Access changes go into the audit journal with the change (issue 11); never a secret."""
    journal_append(kind=kind, actor=actor, subject=subject, data=data)


def token_create(
    *, username: str, role: Role, actor: Actor, name: str = "", expires_days: int | None = None
) -> NewToken:
    if name:
        _name_check(token_name_problem(name), name)
    user = _user(username)
    if role.rank > _role_of(user).rank:
        raise AccessError(f"a token cannot outrank its user: {username} is {_role_of(user)}, not {role}")
    if expires_days is not None and expires_days <= 0:
        raise AccessError("--expires must be a positive number of days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(days=expires_days) if expires_days else None
    try:
        with transaction.atomic():
            row = ApiToken.objects.create(
                user=user,
                name=name or f"token-{user.api_tokens.count() + 1}",
                role=role,
                prefix=secret[: len(TOKEN_PREFIX) + 6],
                digest=token_digest(secret),
                expires_at=expires,
            )
            data: dict[str, object] = {
                "name": row.name,
                "role": str(role),
                "prefix": row.prefix,
                "expires_at": str(expires or ""),
            }
            _journal("token.created", actor, f"token:{row.pk}", data)
    except IntegrityError:
        raise AccessError(f"{username} already has a token named {name!r}") from None
    return NewToken(row=row, secret=secret)


def token_revoke(*, token_id: int, actor: Actor) -> ApiToken:
    token: ApiToken | None = ApiToken.objects.filter(pk=token_id).first()
    if token is None:
        raise AccessError(f"token {token_id} does not exist")
    with transaction.atomic():
        now = timezone.now()
        if ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True).update(revoked_at=now):
            _journal("token.revoked", actor, f"token:{token_id}", {"name": token.name})
    token.refresh_from_db()
    return token


def token_touch(*, token: ApiToken) -> None:
    # At most once a minute: a busy script must not turn every read into a write.
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now  # the row may be reused (the web process's token cache)


def auth_failure_record(*, address: str, kind: str, account: str = "") -> None:
    """A bad token (`kind="token"`, counted per address) or a failed login (`kind="login"`,
    counted per address and `account`, the username tried)."""
    AuthFailure.objects.create(address=address[:64], kind=kind, account=account[:150])
    # Old rows are worth nothing: trim them here rather than in a periodic job.
    window = timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    AuthFailure.objects.filter(at__lt=timezone.now() - 2 * window).delete()


@transaction.atomic
def auth_block_clear(*, address: str, actor: Actor, account: str | None = None) -> int:
    """An admin lifts a block: the failures counted against `address` (only those for `account`
    when given); returns how many were forgotten. Journaled: who lifted which block."""
    failures = AuthFailure.objects.filter(address=address)
    if account is not None:
        failures = failures.filter(account=account)
    cleared, _ = failures.delete()
    data: dict[str, object] = {"address": address, "account": account or "", "failures": cleared}
    _journal("access.unblocked", actor, f"address:{address}", data)
    return int(cleared)


def admin_ensure(*, actor: Actor, username: str = "admin") -> str | None:
    """The first admin of a fresh appliance; returns its generated password (shown once), or
    None when an admin exists already."""
    if Profile.objects.filter(role=Role.ADMIN).exists():
        return None
    password = secrets.token_urlsafe(12)
    user = User.objects.filter(username=username).first()
    if user is None:
        user_create(username=username, role=Role.ADMIN, password=password, actor=actor)
        return password
    user.set_password(password)
    user.save(update_fields=["password"])
    user_set_role(username=username, role=Role.ADMIN, actor=actor)
    return password


def _user(username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise AccessError(f"user {username!r} does not exist")
    return user


def _role_of(user: User) -> Role:
    profile = Profile.objects.filter(user=user).first()
    return Role(profile.role) if profile else Role.VIEWER


def login_record(*, actor: Actor, request: Any) -> None:
    """A browser login (`actor`: the user), into the audit journal (failed ones are counted by
    the rate limiter)."""
    address = client_address(request) if request is not None else ""
    journal_append(
        kind="user.login",
        actor=actor,
        subject=f"user:{actor.name}",
        data={"address": address},
    )
