"""Django's own 404/500 (no route matched, or an error outside the API's handlers): the error
envelope under /api/, a short plain page elsewhere — never a stack trace."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from updates.api.errors import error_response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response(404, "not_found", f"no such resource: {request.path}")
    return HttpResponse("Not found\n", status=404, content_type="text/plain")


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response(500, "internal_error", "internal error (see the server log)")
    return HttpResponse("Internal error (see the server log)\n", status=500, content_type="text/plain")


FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"


@require_GET
@cache_control(public=True, max_age=86400)
def favicon(request: HttpRequest) -> FileResponse:
    """`/favicon.ico`, which browsers and tools ask for whatever a page links: answered, so the
    server log does not warn of a 404 on every first visit."""
    return FileResponse(FAVICON.open("rb"), content_type="image/x-icon")
