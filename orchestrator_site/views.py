"""Django's own 404/500 (no route matched, or an error outside the API's handlers): the error
envelope under /api/, a short plain page elsewhere — never a stack trace."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from updates.api.errors import error_response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response(404, "not_found", f"no such resource: {request.path}")
    return HttpResponse("Not found\n", status=404, content_type="text/plain")


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response(500, "internal_error", "internal error (see the server log)")
    return HttpResponse("Internal error (see the server log)\n", status=500, content_type="text/plain")
