"""Headers on every answer, and the signed-in session's idle timeout (docs/security.md §5).

A small middleware of our own rather than django-csp: one fixed policy, no nonces (no page has
inline script, so none is needed), and no new dependency to pin and track on an appliance.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

# script-src 'self' only: no inline script or on* handler runs, so markup injected into a page
# cannot run. Styles may be inline (the audit report's <style>, Swagger UI's style attributes):
# they cannot run code. data: images for Swagger UI's icons. No framing, no foreign form targets.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


# How often a busy session's last-seen time is written: not on every request (a write each time
# would be a database write per page and per poll), so the idle limit is exact to this much.
_TOUCH_EVERY = 60.0
_SEEN = "_orch_seen"


class SessionIdleMiddleware:
    """Signs a session out after ORCH_SESSION_IDLE_SECONDS without a request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = time.time()
            seen = request.session.get(_SEEN)
            if isinstance(seen, int | float) and now - seen > settings.SESSION_IDLE_SECONDS:
                logout(request)  # flushes the session: the next page asks to sign in again
            elif not isinstance(seen, int | float) or now - seen > _TOUCH_EVERY:
                request.session[_SEEN] = now
        return self.get_response(request)
