"""Who may do what in the web UI: one role per user, checked on the server for every view.

Roles (issue #9): viewer reads, operator also uploads, plans, deploys, resumes and rolls back,
admin also manages users, tokens and the appliance's secrets. A role includes the ones below it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

ROLES = ("viewer", "operator", "admin")
V = TypeVar("V", bound=Callable[..., HttpResponse])


def user_role(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The user's role: the highest role group they are in (superusers are admins)."""
    if not user.is_authenticated:
        return None
    if getattr(user, "is_superuser", False):
        return "admin"
    names = set(cast(Any, user).groups.values_list("name", flat=True))
    return next((role for role in reversed(ROLES) if role in names), None)


def has_role(user: AbstractBaseUser | AnonymousUser, role: str) -> bool:
    have = user_role(user)
    return have is not None and ROLES.index(have) >= ROLES.index(role)


def user_role_set(*, user: AbstractBaseUser, role: str) -> None:
    """Give the user exactly one role."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    groups = cast(Any, user).groups
    groups.remove(*Group.objects.filter(name__in=ROLES))
    groups.add(Group.objects.get_or_create(name=role)[0])


def role_required(role: str) -> Callable[[V], V]:
    """Anonymous users go to the login page; a signed-in user without the role gets 403."""

    def decorate(view: V) -> V:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"this needs the {role} role")
            return view(request, *args, **kwargs)

        return cast(V, wrapper)

    return decorate


def user_create(*, username: str, password: str, role: str) -> AbstractBaseUser:
    user = get_user_model().objects.create_user(username=username, password=password)
    user_role_set(user=user, role=role)
    return user


def user_list() -> list[dict[str, Any]]:
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    return [{"user": u, "role": user_role(u)} for u in users]
