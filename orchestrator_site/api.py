"""The root `NinjaAPI` at /api/v1/: one router per app, the health check, one error envelope.

Mount point for the hooks router (another branch): `api.add_router("/hooks/", hooks_router)`;
its handlers share the envelope because exception handlers belong to this API object, and
`orchestrator_site.errors.ApiError` / `error_response` are there for it to raise or return.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI, Schema, Status

from accounts.auth import signed_in
from devices.api import router as devices_router
from orchestrator_site.errors import install_handlers
from orchestrator_site.health import health_report
from updates.api import router as updates_router
from updates.engine.version import VERSION


class HealthCheckOut(Schema):
    state: str
    detail: str


class HealthOut(Schema):
    state: str
    version: str
    checks: dict[str, HealthCheckOut]


api = NinjaAPI(
    title="Update Orchestrator API",
    version="1",
    description="Bearer API tokens (`orchestrator token create`) or the browser session (with CSRF). "
    'Every error: `{"error": {"code", "message", "details"}}`.',
    urls_namespace="api-v1",
    docs_decorator=signed_in,
)
install_handlers(api)


@api.get("/health", response={200: HealthOut, 503: HealthOut}, auth=None, tags=["health"])
def health(request: HttpRequest) -> Status[dict[str, Any]]:
    """No authentication: for load balancers and monitors. 503 when any check is down."""
    checks = health_report()
    up = all(c["state"] == "up" for c in checks.values())
    return Status(200 if up else 503, {"state": "up" if up else "down", "version": VERSION, "checks": checks})


api.add_router("/", updates_router)
api.add_router("/", devices_router)
