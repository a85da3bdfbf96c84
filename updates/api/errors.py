"""One error envelope for every error the HTTP side answers: `{"error": {"code", "message",
"details"}}`, and the one table that maps exceptions to HTTP statuses.

Routers (ours and the hooks router mounted at /api/v1/hooks/) raise domain errors or `ApiError`;
the handlers here turn them into responses. No stack trace ever leaves the server: an unexpected
error is logged with an id, and the answer carries only that id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, Throttled, ValidationError

from updates.engine.errors import OrchestratorError, Refused, error_envelope
from updates.services.environment import store_relative

log = logging.getLogger("orchestrator.api")


class ApiError(Exception):
    """An answer chosen by a router: status, stable code, message and details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.details = status, code, details


def _problems(exc: Exception) -> Any:
    """The envelope's `details`: a refusal's own (which field, which problems), else the
    error's problems as text."""
    if isinstance(exc, Refused):
        return exc.details
    problems = getattr(exc, "problems", None)
    return [str(p) for p in problems] if problems is not None else None


# The one table of HTTP statuses. Domain errors (`updates.engine.errors.OrchestratorError` and
# its subclasses, ours included) carry their own `code` and `http_status`; this table adds only
# what Django itself raises while reading a request. The first matching row wins.
ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (RequestDataTooBig, 413, "too_large"),
    (MultiPartParserError, 400, "bad_request"),
    (SuspiciousOperation, 400, "bad_request"),
)


def status_of(exc: Exception) -> tuple[int, str] | None:
    if isinstance(exc, OrchestratorError):
        return exc.http_status, exc.code
    return next(((status, code) for cls, status, code in ERROR_STATUS if isinstance(exc, cls)), None)


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    # Files in the data store by their path under it, never the server's absolute path.
    return JsonResponse(error_envelope(code, store_relative(message), _relative(details)), status=status)


def _relative(details: Any) -> Any:
    if isinstance(details, str):
        return store_relative(details)
    if isinstance(details, list):
        return [_relative(d) for d in details]
    if isinstance(details, dict):
        return {k: _relative(v) for k, v in details.items()}
    return details


def domain_response(exc: OrchestratorError) -> JsonResponse:
    """A domain error's answer: its own status and code, its message and details. For routers
    that must answer in the envelope wherever they are mounted (the hooks router)."""
    return error_response(exc.http_status, exc.code, str(exc), _problems(exc))


def _domain(request: HttpRequest, exc: Exception) -> HttpResponse:
    known = status_of(exc)
    if known is None or known[0] >= 500:
        # An unavailable interface or server is still worth its message; a bug is not.
        return _unexpected(request, exc) if known is None else _unavailable(request, exc, *known)
    return error_response(known[0], known[1], str(exc), _problems(exc))


def _unavailable(request: HttpRequest, exc: Exception, status: int, code: str) -> HttpResponse:
    log.warning("%s on %s %s: %s", code, request.method, request.path, exc)
    return error_response(status, code, str(exc), _problems(exc))


def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(exc.status, exc.code, str(exc), exc.details)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = HTTP_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc))


def _validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # Each entry names the field ("body.bundle_id", "query.page") and what is wrong with it; the
    # message says both, so that a client that reads only the message knows what to change.
    details = [
        {
            "field": _field(tuple(e.get("loc", ()))),
            "message": _said(str(e.get("msg", ""))),
            "type": e.get("type"),
        }
        for e in exc.errors
    ]
    said = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return error_response(422, "validation_error", f"invalid request: {said}", details)


def _field(loc: tuple[Any, ...]) -> str:
    """A field's dotted name ("body.bundle_id"). ninja puts the handler's parameter name after
    the source ("body.body.bundle_id", "body.body" for a rule over the whole body): the client
    never saw that name, so it goes."""
    if len(loc) >= 2 and loc[0] == loc[1]:
        loc = loc[:1] + loc[2:]
    return ".".join(str(p) for p in loc)


def _said(message: str) -> str:
    # pydantic prefixes a validator's own words: the words are the message.
    return message.removeprefix("Value error, ")


def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(404, "not_found", str(exc) or "not found")


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("error %s on %s %s", incident, request.method, request.path, exc_info=exc)
    return error_response(
        500, "internal_error", f"internal error (id {incident} in the server log)", {"id": incident}
    )


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
}


def install_handlers(api: NinjaAPI) -> None:
    """Every exception a router can raise ends in the envelope (hooks router included)."""
    from django.http import Http404

    handlers: list[tuple[type[Exception], Callable[[HttpRequest, Any], HttpResponse]]] = [
        (ApiError, _api_error),
        (ValidationError, _validation),
        (Http404, _not_found),
        (AuthenticationError, _http_error),
        (AuthorizationError, _http_error),
        (Throttled, _http_error),
        (HttpError, _http_error),
        (Exception, _domain),
    ]
    for cls, handler in handlers:
        api.add_exception_handler(cls, handler)


def envelope_for_django(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """404/405/500 answered by Django itself (no route matched, wrong method) get the envelope too
    under /api/; pages keep Django's own."""
    if not request.path.startswith("/api/") or response.status_code < 400:
        return response
    if response.get("Content-Type", "").startswith("application/json"):
        return response
    status = response.status_code
    answer = error_response(status, HTTP_CODES.get(status, "error"), _MESSAGES.get(status, "error"))
    if status == 405 and response.has_header("Allow"):
        answer["Allow"] = response["Allow"]
    return answer


_MESSAGES = {
    400: "bad request",
    404: "no such resource",
    405: "method not allowed for this resource",
    500: "internal error",
}


class ApiEnvelopeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return envelope_for_django(request, self.get_response(request))
