"""The devices router (`/api/v1/components`): the components and their last known answers."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router, Schema

from accounts.auth import VIEWER
from devices.models import Component
from devices.selectors import component_list

router = Router(tags=["devices"], auth=VIEWER)


class ComponentDetailOut(Schema):
    key: str
    component_type: str
    component_id: str
    interface: str
    interface_args: list[str]
    provides: dict[str, str]
    inventory: dict[str, list[str]]
    version: str
    refreshed_at: str | None

    @staticmethod
    def resolve_refreshed_at(obj: Component) -> str | None:
        return obj.refreshed_at.isoformat() if obj.refreshed_at else None


@router.get("/components", response=list[ComponentDetailOut])
def components(request: HttpRequest) -> QuerySet[Component]:
    return component_list()
