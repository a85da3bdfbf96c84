"""The history page's chart: deployments per week and outcome."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TypedDict

from django.db.models import Case, Count, Value, When
from django.utils import timezone

from updates.models import Deployment

CHART_OUTCOMES = ("succeeded", "rolled_back", "inconsistent", "rejected", "other")


class WeekCount(TypedDict):
    week: date  # its Monday
    counts: dict[str, int]  # per `CHART_OUTCOMES`
    total: int


def deployments_per_week(*, weeks: int = 12, today: date | None = None) -> list[WeekCount]:
    """Counts per week (Monday first) and outcome, oldest week first, empty weeks included.

    One query over the index on `created_at`, bounded to the weeks shown: the week of each row is
    a CASE on that column (SQL), not a per-row function call, so a long history costs nothing here.
    """
    today = today or timezone.now().date()
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    zone = timezone.get_current_timezone()
    starts = [datetime.combine(first + timedelta(weeks=i), time.min, zone) for i in range(weeks)]
    week = Case(
        *(When(created_at__lt=starts[i + 1], then=Value(i)) for i in range(weeks - 1)),
        default=Value(weeks - 1),
    )
    counts = (
        # Bounded on both sides: SQLite then reads the range from the index on `created_at`
        # instead of walking every deployment by status.
        Deployment.objects.filter(created_at__gte=starts[0], created_at__lt=starts[-1] + timedelta(weeks=1))
        .annotate(week=week)
        .values("week", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    table = {first + timedelta(weeks=i): dict.fromkeys(CHART_OUTCOMES, 0) for i in range(weeks)}
    for row in counts:
        outcome = row["status"] if row["status"] in CHART_OUTCOMES else "other"
        table[first + timedelta(weeks=row["week"])][outcome] += row["n"]
    return [{"week": week, "counts": c, "total": sum(c.values())} for week, c in table.items()]
