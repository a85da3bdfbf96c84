"""The History page's two heavy parts, drawn without the template engine's per-row work.

- The chart: the SVG of deployments per week, rendered by its template once and kept until the
  history changes (`chart_key`: today, the stored counts per status, the newest deployment), so
  a visit costs one small query instead of the per-week count and 60 bars' worth of template.
- The rows: 20 table rows as plain strings, the markup `_deployment_cells.html` drew (its
  include per row, date and number filters were most of the page's time).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django import forms
from django.db import connection
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from updates import selectors
from updates.models import Deployment, DeploymentCount
from updates.statuses import component_ended, status_label

CHART = {"width": 960, "height": 220, "left": 36, "bottom": 40, "top": 12}

_DEPLOYMENTS = Deployment._meta.db_table
_COUNTS = DeploymentCount._meta.db_table
# Everything the chart is drawn from changes one of these: a deployment created (the newest id
# and created_at), a status changed (the counts), a new day (the weeks shown).
_KEY_SQL = (
    f"SELECT (SELECT MAX(id) FROM {_DEPLOYMENTS}), (SELECT MAX(created_at) FROM {_DEPLOYMENTS}), "
    f"(SELECT COUNT(*) FROM {_COUNTS}), (SELECT COALESCE(SUM(n), 0) FROM {_COUNTS})"
)
_charts: dict[tuple[Any, ...], SafeString] = {}
_charts_lock = threading.Lock()


def chart_key() -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(_KEY_SQL)
        newest = cursor.fetchone()
        cursor.execute(f"SELECT status, n FROM {_COUNTS} ORDER BY status")
        counts = tuple(cursor.fetchall())
    zone = timezone.get_current_timezone()
    return (timezone.localdate(), str(zone), connection.alias, *(newest or ()), counts)


def chart_html() -> SafeString:
    """The chart's markup (`_chart.html`), drawn again only when the history changed."""
    key = chart_key()
    drawn = _charts.get(key)
    if drawn is None:
        geometry = chart_geometry(selectors.deployments_per_week(today=key[0]))
        drawn = mark_safe(render_to_string("updates/_chart.html", {"chart": geometry}))
        with _charts_lock:
            _charts.clear()  # only the current one is worth keeping
            _charts[key] = drawn
    return drawn


def chart_geometry(weeks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stacked bars per week for the history's SVG chart (the template draws them)."""
    top = max([w["total"] for w in weeks] + [1])
    inner = CHART["height"] - CHART["bottom"] - CHART["top"]
    slot = (CHART["width"] - CHART["left"]) / max(len(weeks), 1)
    bars = []
    for i, week in enumerate(weeks):
        y = float(CHART["height"] - CHART["bottom"])
        for outcome, n in week["counts"].items():
            height = inner * n / top
            if n:
                x = CHART["left"] + (i + 0.15) * slot
                bars.append(
                    {
                        "x": _coordinate(x),
                        "y": _coordinate(y - height),
                        "w": _coordinate(slot * 0.7),
                        "h": _coordinate(height),
                        "outcome": outcome,
                        "n": n,
                        "week": week["week"],
                    }
                )
            y -= height
    labels = [
        {"x": _coordinate(CHART["left"] + (i + 0.5) * slot), "week": w["week"]} for i, w in enumerate(weeks)
    ]
    return CHART | {
        "bars": bars,
        "labels": labels,
        "max": top,
        "outcomes": selectors.CHART_OUTCOMES,
        "weeks": weeks,
    }


def _coordinate(value: float) -> str:
    """An SVG coordinate, one decimal: formatted here, not by `floatformat` (a Decimal per call)."""
    return f"{value:.1f}"


# ----- the filters' fields ------------------------------------------------------------------------

_fields: dict[tuple[Any, ...], SafeString] = {}


def fields_html(form: forms.Form, names: Sequence[str]) -> SafeString:
    """`_field.html` for each of the form's fields `names`. Drawing a widget goes through the
    form renderer's templates (most of a page's template time): a valid form's fields depend on
    the submitted values alone, so each set of values is drawn once (a few hundred kept)."""
    key = (type(form).__name__, *(form.data.get(name, "") for name in names)) if form.is_valid() else None
    drawn = _fields.get(key) if key else None
    if drawn is None:
        drawn = mark_safe(
            "".join(render_to_string("updates/_field.html", {"field": form[name]}) for name in names)
        )
        if key:
            if len(_fields) >= 256:
                _fields.clear()
            _fields[key] = drawn
    return drawn


# ----- the table's rows ---------------------------------------------------------------------------


def _e(value: object) -> str:
    # The template engine's autoescape: the same five characters, the same entities.
    return html.escape(str(value), quote=True)


def _seconds(value: float) -> str:
    """`floatformat:1`: half up, on the decimal the float prints as."""
    return str(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _cells(row: selectors.DeploymentRow, link: str) -> str:
    started: datetime | None = row["started_at"]
    when = timezone.localtime(started or row["created_at"])
    queued = "" if started else ' title="queued, not started"'
    duration = row["duration_seconds"]
    took = f"{_seconds(duration)} s" if duration is not None else "—"
    status = _e(row["status"])
    return (
        f'<td><a href="{_e(link)}">{row["id"]}</a></td>\n'
        f'<td><time datetime="{when.isoformat()}"{queued}>{when:%Y-%m-%d %H:%M}</time></td>\n'
        f"<td>{_e(row['actor']['label'])}</td>\n"
        f"<td>{_e(row['manifest_from'] or '—')} → {_e(row['manifest'])}</td>\n"
        f'<td><span class="badge badge-{status}">{_e(status_label(row["status"]))}</span></td>\n'
        f"<td>{took}</td>\n"
    )


def rows_html(rows: Sequence[selectors.DeploymentRow]) -> SafeString:
    """The table body's rows (what `{% for r in rows %}<tr>{% include cells %}</tr>` drew)."""
    link = reverse("deployment", args=[0])
    head, _, tail = link.rpartition("0")
    return mark_safe("".join(f"<tr>{_cells(r, head + str(r['id']) + tail)}</tr>" for r in rows))


# ----- the deployment page's timeline lanes --------------------------------------------------------


def lanes_html(
    groups: Sequence[Mapping[str, Any]], outcomes: Mapping[str, Mapping[str, Any]], step_url: tuple[str, str]
) -> SafeString:
    """The timeline's lanes (order groups -> components -> a block per step), the markup the
    template's three nested loops drew: the page's largest part, redrawn on every event."""
    if not groups:
        return mark_safe('<p class="empty">No step yet — the deployment is queued for a worker.</p>\n')
    head, tail = (_e(part) for part in step_url)
    out: list[str] = []
    for lane in groups:
        components = lane["components"]
        if lane["order"] is not None:
            title = f"Order {_e(lane['order'])}"
        elif components and components[0]["key"] == "system":
            title = "Approval gates and health checks"
        else:
            title = "Identity queries"
        out.append(f'  <div class="lane">\n    <h3 class="lane-title">{title}</h3>\n')
        for c in components:
            out.append(_lane_row(c, outcomes, head, tail))
        out.append("  </div>\n")
    return mark_safe("".join(out))


def _lane_row(c: Mapping[str, Any], outcomes: Mapping[str, Mapping[str, Any]], head: str, tail: str) -> str:
    key = _e(c["key"])
    label = f"<strong>{key}</strong>"
    if c["action"] == "install":
        outcome = outcomes.get(c["key"]) if outcomes else None
        end = component_ended(outcome) if outcome else ""
        said = _e(end) if end else f"{_e(c['current'] or '—')} → {_e(c['target'])}"
        label += f'<br><span class="muted row-ended">{said}</span>'
    elif c["action"] == "skip":
        label += f'<br><span class="muted">unchanged ({_e(c["current"])})</span>'
    blocks = ['<li><span class="block skipped wide">skipped</span></li>'] if c["action"] == "skip" else []
    for s in c["steps"]:
        status, state, url = _e(s["status"]), _e(s["state"]), f"{head}{s['id']}{tail}"
        blocks.append(
            f'<li><a class="block {status}" href="{url}"\n'
            f'               hx-get="{url}" hx-target="#step-panel" hx-swap="innerHTML"\n'
            f'               data-status="{status}" title="{state}: {status}">{state}'
            f'<span class="sr-only"> ({status})</span></a></li>'
        )
    return (
        f'    <div class="row" data-key="{key}">\n      <div class="row-label">{label}</div>\n'
        f'      <ol class="blocks">\n        {"".join(b + chr(10) + "        " for b in blocks)}\n'
        "      </ol>\n    </div>\n"
    )
