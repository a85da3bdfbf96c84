"""Who did it, as the rows record it (shared by the deployment and bundle shapes)."""

from __future__ import annotations

from updates.models import Bundle, Deployment


def _actor(row: Deployment | Bundle) -> dict[str, str]:
    """The API's actor shape: {"kind", "name"} and how pages name it (`Actor.label`)."""
    who = row.who
    return {"kind": who.kind, "name": who.name, "label": who.label}
