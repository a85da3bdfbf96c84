"""The server-sent events of a deployment: every step change, in commit order, until it ends.

The database is the only channel (no extra broker): the stream polls the `StepEvent` rows after
the last one it sent. Their ids come from one sequence and a deployment's changes are written by
a single journal thread in order, so "every id after N" is exactly what a client reconnecting
with `Last-Event-ID: N` has not seen.

Served under ASGI (orchestrator_site/asgi.py, how `bin/run` and the web unit start the app), a
stream is a coroutine: it holds no request thread. One poller per web process (`_Hub`) asks the
database for every followed deployment at once — two queries per tick however many streams are
open — and hands each stream its own rows. Under WSGI (the test client) the same frames come
from a plain generator that polls for itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from django.db.models import Q
from django.http import StreamingHttpResponse

from updates import selectors
from updates.api.errors import ApiError
from updates.models import Deployment, StepEvent


def _frame(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


class _Follow:
    """One stream's position: turns a tick's (status, new rows) into the frames it owes."""

    def __init__(self, deployment_id: int, after: int) -> None:
        self.deployment_id, self.after = deployment_id, after
        self.last_status: str | None = None
        self.last_sent = time.monotonic()
        self.done = False

    def frames(self, status: str | None, events: list[StepEvent]) -> list[str]:
        out = []
        # Status first, then events: every change committed before the run ended is sent before `end`.
        if status != self.last_status:
            out.append(_frame("status", {"deployment": self.deployment_id, "status": status}))
            self.last_status = status
        for event in events:
            if event.pk <= self.after:
                continue  # the hub read from an older position for another stream
            self.after = event.pk
            out.append(
                _frame("step", {"change": event.kind, "step": selectors.step_report(event.step)}, event.pk)
            )
        if status not in Deployment.IN_PROGRESS:
            out.append(_frame("end", {"deployment": self.deployment_id, "status": status}))
            self.done = True
        elif not out and time.monotonic() - self.last_sent > settings.EVENTS_HEARTBEAT_SECONDS:
            out.append(": keep-alive\n\n")  # a comment: keeps proxies from closing an idle stream
        if out:
            self.last_sent = time.monotonic()
        return out


def event_stream(*, deployment_id: int, after: int, release: Callable[[], None]) -> Iterator[str]:
    """The stream under WSGI: polls for itself and holds its thread (the test client)."""
    try:
        yield "retry: 2000\n\n"
        follow = _Follow(deployment_id, after)
        deadline = time.monotonic() + settings.EVENTS_MAX_SECONDS
        while time.monotonic() < deadline:
            status = selectors.deployment_status(deployment_id=deployment_id)
            events = selectors.step_events_after(deployment_id=deployment_id, after=follow.after)
            yield from follow.frames(status, events)
            if follow.done:
                return
            time.sleep(settings.EVENTS_POLL_SECONDS)
    finally:
        release()


# ----- under ASGI: one poller per process ----------------------------------------------------------


def _poll(positions: dict[int, int]) -> tuple[dict[int, str], dict[int, list[StepEvent]]]:
    """Every followed deployment's status, then its rows after the oldest position (2 queries)."""
    close_old_connections()  # this executor thread serves no request: drop a broken connection
    statuses = dict(Deployment.objects.filter(pk__in=positions).values_list("pk", "status"))
    wanted = Q()
    for deployment_id, after in positions.items():
        wanted |= Q(deployment_id=deployment_id, pk__gt=after)
    events: dict[int, list[StepEvent]] = defaultdict(list)
    for event in StepEvent.objects.select_related("step").filter(wanted).order_by("id"):
        events[event.deployment_id].append(event)
    return statuses, events


class _Hub:
    """The process's streams: who follows which deployment, and the one task polling for them."""

    def __init__(self) -> None:
        self.queues: dict[asyncio.Queue[tuple[str | None, list[StepEvent]]], _Follow] = {}
        self.task: asyncio.Task[None] | None = None

    def join(self, follow: _Follow) -> asyncio.Queue[tuple[str | None, list[StepEvent]]]:
        queue: asyncio.Queue[tuple[str | None, list[StepEvent]]] = asyncio.Queue()
        self.queues[queue] = follow
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        return queue

    def leave(self, queue: asyncio.Queue[tuple[str | None, list[StepEvent]]]) -> None:
        self.queues.pop(queue, None)

    async def _run(self) -> None:
        while self.queues:
            positions: dict[int, int] = {}
            for follow in self.queues.values():
                positions[follow.deployment_id] = min(
                    positions.get(follow.deployment_id, follow.after), follow.after
                )
            statuses, events = await sync_to_async(_poll, thread_sensitive=False)(positions)
            for queue, follow in list(self.queues.items()):
                queue.put_nowait((statuses.get(follow.deployment_id), events.get(follow.deployment_id, [])))
            await asyncio.sleep(settings.EVENTS_POLL_SECONDS)


_hubs: dict[asyncio.AbstractEventLoop, _Hub] = {}


async def event_stream_async(
    *, deployment_id: int, after: int, release: Callable[[], None]
) -> AsyncIterator[str]:
    """The stream under ASGI: a coroutine fed by the process's hub; `release` frees the user's slot."""
    try:
        yield "retry: 2000\n\n"
        hub = _hubs.setdefault(asyncio.get_running_loop(), _Hub())
        follow = _Follow(deployment_id, after)
        queue = hub.join(follow)
        deadline = time.monotonic() + settings.EVENTS_MAX_SECONDS
        try:
            while not follow.done and time.monotonic() < deadline:
                status, events = await queue.get()
                for frame in follow.frames(status, events):
                    yield frame
        finally:
            hub.leave(queue)
    finally:
        release()


# ----- a cap per user ------------------------------------------------------------------------------

_open: dict[str, int] = defaultdict(int)
_open_lock = threading.Lock()


def stream_slot(user: str) -> Callable[[], None]:
    """Take one of the user's `ORCH_EVENTS_PER_USER` streams in this process, or refuse with 429;
    returns the function that gives it back (once, whatever happens to the stream)."""
    with _open_lock:
        if _open[user] >= settings.EVENTS_PER_USER:
            raise ApiError(
                429,
                "too_many_streams",
                f"{user} already has {_open[user]} open event stream{'s' if _open[user] != 1 else ''} "
                f"on this web process, the most allowed (ORCH_EVENTS_PER_USER={settings.EVENTS_PER_USER}); "
                "close one first",
            )
        _open[user] += 1
    released = False

    def release() -> None:
        nonlocal released
        with _open_lock:
            if not released:
                released = True
                _open[user] -= 1

    return release


class EventStreamResponse(StreamingHttpResponse):
    """`text/event-stream`, unbuffered; gives the user's slot back when closed (also done by the
    stream's own `finally`, which a stream dropped before its first frame never reaches)."""

    def __init__(self, stream: Iterator[str] | AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(stream, content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"
        self._release = release

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()
