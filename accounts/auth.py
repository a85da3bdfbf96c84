"""How the API knows who calls: `Authorization: Bearer <token>` or the browser session (with
CSRF on unsafe methods), each giving a `Principal` whose role must reach the route's minimum.

No credentials -> 401; credentials that are fine but whose role is too low -> 403; a bad token
is recorded against the client address, and an address with too many bad tokens gets 429 for
its further bad ones — never for a valid token (docs/security.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from ninja.errors import AuthorizationError, HttpError
from ninja.security import APIKeyCookie, HttpBearer

from accounts import selectors, services
from accounts.addresses import client_address
from accounts.models import Role
from accounts.selectors import Principal
from updates.api.errors import error_response


def _allowed(principal: Principal | None, role: Role) -> Principal | None:
    if principal is not None and not principal.may(role):
        raise AuthorizationError(403, f"this needs the {role} role; you have {principal.role}")
    return principal


class BearerToken(HttpBearer):
    def __init__(self, role: Role) -> None:
        super().__init__()
        self.role = role

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        # Read on every request, never cached in the process: a revocation or a role change
        # counts on every web process at once (one indexed query: selectors.token_principal).
        principal = selectors.token_principal(token)
        if principal is None:
            # Only bad tokens are slowed: someone else's guessing from the same address (every
            # client is the proxy's address without ORCH_BEHIND_PROXY) never refuses a good one.
            address = client_address(request)
            if selectors.token_guessing_blocked(address=address):
                raise HttpError(429, "too many failed attempts from this address; try again later")
            services.auth_failure_record(address=address, kind="token")
            return None
        if principal.token is not None:
            services.token_touch(token=principal.token)
        return _allowed(principal, self.role)


class Session(APIKeyCookie):
    """Django's session cookie; ninja checks CSRF for unsafe methods before we are called."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, role: Role) -> None:
        super().__init__(csrf=True)
        self.role = role

    def _get_key(self, request: HttpRequest) -> str | None:
        # No session cookie: not a browser session at all, so 401 (not a CSRF 403) for anonymous.
        if self.param_name not in request.COOKIES:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        if key is None:
            return None
        user: Any = request.user
        if not user.is_authenticated:
            return None
        return _allowed(selectors.session_principal(user), self.role)


def access(role: Role) -> list[Any]:
    """The `auth=` of a route: a token or a session, at least `role`."""
    return [BearerToken(role), Session(role)]


VIEWER = access(Role.VIEWER)
OPERATOR = access(Role.OPERATOR)
ADMIN = access(Role.ADMIN)


def signed_in(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For the OpenAPI document and the docs page (not ninja operations): a session or a valid
    token. A browser without either is sent to the login page; anything else gets 401."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated or _token_ok(request):
            return view(request, *args, **kwargs)
        if "text/html" in request.headers.get("Accept", ""):
            return redirect_to_login(request.get_full_path())
        return error_response(401, "unauthorized", "Unauthorized")

    return wrapper


def _token_ok(request: HttpRequest) -> bool:
    try:
        return BearerToken(Role.VIEWER)(request) is not None
    except HttpError:
        return False
