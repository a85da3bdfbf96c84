"""The root `NinjaAPI` at /api/v1/: one router per app, the health check, one error envelope.

The hooks router (`/hooks/mender`) authenticates by the Mender signature, not by user or token;
it shares the envelope because exception handlers belong to this API object.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja import NinjaAPI, Schema, Status
from ninja.openapi.docs import Swagger
from ninja.responses import NinjaJSONEncoder

from accounts.auth import signed_in
from devices.api import router as devices_router
from updates.api.errors import install_handlers
from updates.api.health import health_report
from updates.api.hooks import router as hooks_router
from updates.api.routes import router as updates_router
from updates.engine.version import VERSION


class HealthCheckOut(Schema):
    state: str
    detail: str


class HealthOut(Schema):
    state: str
    version: str
    checks: dict[str, HealthCheckOut]


class LocalSwagger(Swagger):
    """The docs page with its scripts from this server (ninja picks a CDN unless it is an
    installed app, which would cost every command-line call its import)."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {"swagger_settings": json.dumps(self.settings, indent=1), "api": api, "add_csrf": True}
        return render(request, self.template, context)


# The operation ids clients are generated from (docs/openapi.json) name the module a route was
# written in; they are part of the contract, so a module moved in the code keeps its old name.
OPERATION_MODULES = {"updates.api.routes": "updates.api", "updates.api.hooks": "updates.hooks_api"}


class OrchestratorApi(NinjaAPI):
    def get_openapi_operation_id(self, operation: Any) -> str:
        module = operation.view_func.__module__
        name = OPERATION_MODULES.get(module, module).replace(".", "_")
        return f"{name}_{operation.view_func.__name__}"


api = OrchestratorApi(
    docs=LocalSwagger(),
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
api.add_router("/hooks/", hooks_router)


def openapi_document() -> str:
    """docs/openapi.json, as the drift test compares it."""
    return json.dumps(api.get_openapi_schema(), cls=NinjaJSONEncoder, indent=2, sort_keys=True) + "\n"
