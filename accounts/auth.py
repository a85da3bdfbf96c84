"""How the API knows who calls: `Authorization: Bearer <token>` or the browser session (with
CSRF on unsafe methods), each giving a `Principal` whose role must reach the route's minimum.

No credentials -> 401; credentials that are fine but whose role is too low -> 403; a bad token
is recorded against the client address, and an address with too many failures gets 429.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import AuthorizationError, HttpError
from ninja.security import APIKeyCookie, HttpBearer

from accounts import selectors, services
from accounts.models import Role
from accounts.selectors import Principal


def client_address(request: HttpRequest) -> str:
    # gunicorn binds loopback; a reverse proxy in front would set X-Forwarded-For, which we do not
    # trust (a client could write any address there and dodge the limit).
    return str(request.META.get("REMOTE_ADDR", "unknown"))


def _allowed(principal: Principal | None, role: Role) -> Principal | None:
    if principal is not None and not principal.may(role):
        raise AuthorizationError(403, f"this needs the {role} role; you have {principal.role}")
    return principal


class BearerToken(HttpBearer):
    def __init__(self, role: Role) -> None:
        super().__init__()
        self.role = role

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        address = client_address(request)
        if selectors.auth_blocked(address=address):
            raise HttpError(429, "too many failed attempts from this address; try again later")
        principal = selectors.token_principal(token)
        if principal is None:
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
