"""`/api/v1/hooks/`: Mender webhooks and CI deployment requests (docs/webhooks.md).

Thin edge: size check, the raw body and the signature header to one service call, its answer
out as JSON. No session or token auth here: the HMAC signature of the body is the
authentication (Mender can send nothing else), so the API-wide auth is switched off for this
route only. The body is read raw, never through a schema, because the signature covers the
exact bytes; the service parses it after checking the signature.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from ninja import Field, Router, Schema

from updates.api.errors import domain_response
from updates.engine.errors import BodyTooLarge, OrchestratorError
from updates.services import hooks

router = Router(tags=["hooks"])


class ErrorDetailOut(Schema):
    code: str
    message: str
    details: Any = None


class ErrorOut(Schema):
    error: ErrorDetailOut


class DeploymentRefOut(Schema):
    id: int
    status: str


class HookOut(Schema):
    event: str
    type: str
    device_id: str = Field(description="the Mender device the event is about; empty for a deployment request")
    own_device: bool = Field(description="the event is about this system's own Mender device")
    action: str = Field(description="recorded | refresh | deployment | fetch (a URL queued for a worker)")
    deployment: DeploymentRefOut | None = None
    bundle: int | None = None


_EVENT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["id", "type", "data", "time"],
                "properties": {
                    "id": {"type": "string", "description": "unique event id (Mender: a UUID)"},
                    "type": {
                        "type": "string",
                        "enum": [
                            "device-provisioned",
                            "device-decommissioned",
                            "device-status-changed",
                            "device-inventory-changed",
                            "inventory-changed",
                            "deployment-requested",
                        ],
                    },
                    "data": {"type": "object"},
                    "time": {"type": "string", "format": "date-time"},
                },
            }
        }
    },
}
_SIGNATURE = {
    "name": "X-Men-Signature",
    "in": "header",
    "required": True,
    "description": "hex HMAC-SHA256 of the raw body, keyed with the bytes of the hex hook secret",
    "schema": {"type": "string"},
}


@router.post(
    "/mender",
    auth=None,
    response={200: HookOut, 202: HookOut, frozenset({401, 409, 413, 422, 502}): ErrorOut},
    summary="Receive a Mender webhook or a signed deployment request",
    openapi_extra={"requestBody": _EVENT_BODY, "parameters": [_SIGNATURE]},
)
def mender(request: HttpRequest) -> JsonResponse:
    length = str(request.META.get("CONTENT_LENGTH") or "0")
    if not length.isdigit() or int(length) > settings.HOOKS_MAX_BODY_BYTES:
        return domain_response(BodyTooLarge(f"the body is larger than {settings.HOOKS_MAX_BODY_BYTES} bytes"))
    try:
        answer = hooks.hook_event_receive(
            body=request.body,
            signature=request.headers.get("X-Men-Signature"),
            remote_addr=request.META.get("REMOTE_ADDR", ""),
        )
    except hooks.HookUnauthorized:
        response = domain_response(hooks.HookUnauthorized("missing or invalid X-Men-Signature"))
        # The service wrote its rate-limited line; Django's own line per 4xx would let a flood
        # of unsigned calls fill the log anyway (django.utils.log.log_response skips these).
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    except OrchestratorError as exc:
        # Answered here, not left to the API's handlers: this router answers in the envelope
        # wherever it is mounted, and a refusal's status is the one recorded for its replays.
        return domain_response(exc)
    return JsonResponse(answer.body, status=answer.status)
