"""Who may see and do what in the web UI: the user's one role (accounts, issue #9), checked on
the server for every page and action. Anonymous users go to the login page; a signed-in user
without the role gets 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.models import Role
from accounts.selectors import role_of, session_principal
from updates.actors import Actor

V = TypeVar("V", bound=Callable[..., HttpResponse])


def has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    have = role_of(user)
    return have is not None and have.rank >= role.rank


def role_required(role: Role) -> Callable[[V], V]:
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


def actor(request: HttpRequest) -> Actor:
    """Who the rows record for a write from the browser: the same actor as the API's session."""
    principal = session_principal(cast(Any, request.user))
    if principal is None:
        raise PermissionDenied("not signed in")
    return principal.actor
