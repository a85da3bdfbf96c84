"""Which address a request comes from: what failed logins and bad tokens are counted against."""

from __future__ import annotations

from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    # gunicorn binds loopback; a reverse proxy in front would set X-Forwarded-For, which we do not
    # trust (a client could write any address there and dodge the limit).
    return str(request.META.get("REMOTE_ADDR", "unknown"))
