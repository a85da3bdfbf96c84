"""Long tables drawn in Python: the template engine resolves every `{{ variable }}`, filter and
`{% url %}` of a loop's body once per row (about 0.4 ms a row for the Bundles page's 50), while
the same markup put together here costs a few microseconds a row. Each function writes exactly
what its template wrote, escaped the same way (`html.escape`, as Django's autoescape)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from updates.selectors import BundleRow, DeploymentRecord, PageComponent
from updates.statuses import component_ended, status_label

_ID = 2_147_483_647  # a stand-in id: the route is reversed once per table, not once per row


def bundle_rows_html(rows: Sequence[BundleRow]) -> SafeString:
    """The Bundles page's `<tr>`s: number and manifest (each a link to the bundle's page), file
    and size, status with its problems, when (local time) and by whom."""
    head, _, tail = reverse("bundle", args=[_ID]).partition(str(_ID))
    out: list[str] = []
    for b in rows:
        href = escape(f"{head}{b['id']}{tail}")
        problems = "".join(f"<li>{escape(str(p))}</li>" for p in b["problems"])
        created = timezone.localtime(b["created_at"])
        status = escape(b["status"])
        out.append(
            f'<tr>\n<td><a href="{href}">{b["id"]}</a></td>\n'
            f'<td><a href="{href}">{escape(b["manifest"] or "—")}</a></td>\n'
            f'<td>{escape(b["filename"])} <span class="muted">{escape(filesizeformat(b["size"]))}</span></td>\n'
            f'<td>\n<span class="badge badge-{status}">{escape(status_label(b["status"]))}</span>\n'
            + (f'<ul class="problems">{problems}</ul>' if b["problems"] else "")
            + "\n</td>\n"
            f'<td><time datetime="{created.isoformat()}">{created:%Y-%m-%d %H:%M}</time></td>\n'
            f"<td>{escape(b['actor_label'])}</td>\n</tr>\n"
        )
    return mark_safe("".join(out))


def system_boxes_html(boxes: Sequence[tuple[int | None, Sequence[PageComponent]]]) -> SafeString:
    """The System page's component boxes, one order group after another: exactly what the
    template's two nested loops wrote (their whitespace too), the hottest part of the page."""
    out: list[str] = []
    for order, components in boxes:
        title = f"Order {order}" if order is not None else "Not in the active manifest"
        out.append(
            f'\n    <div class="order-group">\n      <h3>{title}</h3>\n      <ul class="boxes">\n        '
        )
        out.extend(_box_html(c) for c in components)
        out.append("\n      </ul>\n    </div>\n    ")
    return mark_safe("".join(out))


def _box_html(c: PageComponent) -> str:
    uncommitted = c["uncommitted"]
    note = (
        '<dd class="note uncommitted warn">new, not committed <span class="muted">'
        f"(committed: {escape(c['version'] or 'unknown')})</span></dd>"
        if uncommitted
        else ""
    )
    drifted = '<dd class="note drifted warn">changed since the last deployment</dd>' if c["drifted"] else ""
    return (
        f'\n        <li class="box{" uncommitted" if uncommitted else ""}" data-key="{escape(c["key"])}">\n'
        f'          <p class="box-title"><span class="type">{escape(c["component_type"])}</span> '
        f"<strong>{escape(c['component_id'])}</strong></p>\n"
        "          <dl>\n"
        f'            <dt>Version</dt><dd class="version">{escape(c["running"] or "unknown")}</dd>\n'
        f"            {note}\n"
        f"            {drifted}\n"
        f"            <dt>Interface</dt><dd>{escape(c['interface'])}</dd>\n"
        f"            <dt>Last seen</dt><dd>{_seen(c['last_seen'])}</dd>\n"
        "          </dl>\n        </li>\n        "
    )


def _seen(when: datetime | None) -> str:
    """`{% if %}<time datetime="{{ |date:'c' }}">{{ |date:"Y-m-d H:i:s" }}</time>{% else %}never`."""
    if not when:
        return "never"
    local = _local(when)
    return f'<time datetime="{local.isoformat()}">{local:%Y-%m-%d %H:%M:%S}</time>'


def _local(when: datetime) -> datetime:
    """What the template shows of a datetime (`template_localtime`, which the stubs do not
    declare): an aware one in the current time zone."""
    return timezone.localtime(when) if settings.USE_TZ and timezone.is_aware(when) else when


def last_deployment_html(last: DeploymentRecord) -> SafeString:
    """The System page's "Last deployment" card (`status.last`): exactly what its template wrote,
    whose link, date filters and outcome list were a quarter of the page's rendering."""
    status = escape(last["status"])
    href = escape(reverse("deployment", args=[last["id"]]))
    ended = ""
    if last["finished_at"]:
        local = _local(last["finished_at"])
        ended = f' <span class="muted">ended <time datetime="{local.isoformat()}">{local:%Y-%m-%d %H:%M}</time></span>'
    reason = (
        f'<p class="reason reason-{status}">{escape(last["reason"])}</p>'
        if last["reason"] and last["status"] != "succeeded"
        else ""
    )
    items = "".join(
        f"<li><strong>{escape(o['key'])}</strong>: {escape(component_ended(o))}</li>"
        for o in last["outcomes"]
    )
    outcomes = f'<ul class="ended">{items}</ul>' if items else ""
    return mark_safe(
        '\n<section class="card lastrun" aria-labelledby="last-h" id="last-deployment">\n'
        '  <h2 id="last-h">Last deployment</h2>\n'
        f'  <p><a href="{href}">Deployment {last["id"]}</a> of <strong>{escape(last["manifest"])}</strong> —\n'
        f'    <span class="badge badge-{status}">{escape(status_label(last["status"]))}</span>{ended}</p>\n'
        f"  {reason}\n"
        f"  {outcomes}\n"
        "</section>\n"
    )
