"""Who did it, as the rows record it (shared by the deployment and bundle shapes)."""

from __future__ import annotations

from updates.models import Bundle, Deployment


def _actor(row: Deployment | Bundle) -> dict[str, str]:
    """The API's actor shape: {"kind", "name"[, "via"]} and how pages name it (`Actor.label`)."""
    who = row.who
    return {**who.as_json(), "label": who.label}  # `via` too, for the command line's JSON
