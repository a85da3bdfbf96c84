"""Template filters every page may use without `{% load %}` (settings' TEMPLATES `builtins`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template

from updates.statuses import component_ended
from updates.statuses import status_label as _status_label

register = template.Library()


@register.filter
def status_label(value: object) -> str:
    """`{{ d.status|status_label }}`: the one wording of a status (`updates/statuses.py`)."""
    return _status_label(str(value or ""))


@register.filter
def ended(outcomes: Mapping[str, Mapping[str, Any]], key: str) -> str:
    """`{{ outcomes|ended:c.key }}`: where that component ended (`statuses.component_ended`),
    "" when `outcomes` (by component key) does not name it."""
    outcome = outcomes.get(key) if outcomes else None
    return component_ended(outcome) if outcome else ""


@register.filter
def outcome_text(outcome: Mapping[str, Any]) -> str:
    """`{{ o|outcome_text }}` of one `OutcomeReport`: where that component ended."""
    return component_ended(outcome)
