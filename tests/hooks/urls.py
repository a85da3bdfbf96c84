"""A small API mounting only the hooks router, where the lead mounts it (/api/v1/hooks/)."""

from __future__ import annotations

from django.urls import path
from ninja import NinjaAPI

from updates.api.hooks import router

api = NinjaAPI(urls_namespace="hooks-test")
api.add_router("/hooks/", router)
urlpatterns = [path("api/v1/", api.urls)]
