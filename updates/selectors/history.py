"""The history page's chart: deployments per week and outcome."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TypedDict

from django.db.models import Count
from django.db.models.functions import TruncWeek
from django.utils import timezone

from updates.models import Deployment

CHART_OUTCOMES = ("succeeded", "rolled_back", "inconsistent", "rejected", "other")


class WeekCount(TypedDict):
    week: date  # its Monday
    counts: dict[str, int]  # per `CHART_OUTCOMES`
    total: int


def deployments_per_week(*, weeks: int = 12, today: date | None = None) -> list[WeekCount]:
    """Counts per week (Monday first) and outcome, oldest week first, empty weeks included."""
    today = today or timezone.now().date()
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    counts = (
        Deployment.objects.filter(created_at__date__gte=first)
        .annotate(week=TruncWeek("created_at"))
        .values("week", "status")
        .annotate(n=Count("id"))
    )
    table = {first + timedelta(weeks=i): dict.fromkeys(CHART_OUTCOMES, 0) for i in range(weeks)}
    for row in counts:
        outcome = row["status"] if row["status"] in CHART_OUTCOMES else "other"
        table[row["week"].date()][outcome] += row["n"]
    return [{"week": week, "counts": c, "total": sum(c.values())} for week, c in table.items()]
