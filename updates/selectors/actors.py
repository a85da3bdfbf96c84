"""Who did it, as the rows record it (shared by the deployment and bundle shapes)."""

from __future__ import annotations

from updates.models import Bundle, Deployment


def _actor(row: Deployment | Bundle) -> dict[str, str]:
    return {"kind": row.actor_kind, "name": row.actor_name}
