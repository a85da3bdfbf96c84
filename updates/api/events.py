"""The server-sent events of a deployment: every step change, in commit order, until it ends.

The database is the only channel (no extra broker): the stream polls the `StepEvent` rows after
the last one it sent. Their ids come from one sequence and a deployment's changes are written by
a single journal thread in order, so "every id after N" is exactly what a client reconnecting
with `Last-Event-ID: N` has not seen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from updates import selectors
from updates.models import Deployment

HEARTBEAT_SECONDS = 15.0


def _frame(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


def event_stream(*, deployment_id: int, after: int) -> Iterator[str]:
    yield "retry: 2000\n\n"
    deadline = time.monotonic() + settings.EVENTS_MAX_SECONDS
    last_status, last_sent = None, time.monotonic()
    while time.monotonic() < deadline:
        # Status first, then events: every change committed before the run ended is sent before `end`.
        status = selectors.deployment_status(deployment_id=deployment_id)
        if status != last_status:
            yield _frame("status", {"deployment": deployment_id, "status": status})
            last_status, last_sent = status, time.monotonic()
        for event in selectors.step_events_after(deployment_id=deployment_id, after=after):
            after = event.pk
            yield _frame("step", {"change": event.kind, "step": selectors.step_report(event.step)}, event.pk)
            last_sent = time.monotonic()
        if status not in Deployment.IN_PROGRESS:
            yield _frame("end", {"deployment": deployment_id, "status": status})
            return
        if time.monotonic() - last_sent > HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"  # a comment: keeps proxies from closing an idle stream
            last_sent = time.monotonic()
        time.sleep(settings.EVENTS_POLL_SECONDS)
