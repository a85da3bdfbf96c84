"""The ASGI application `bin/run` and the web unit serve (gunicorn with uvicorn workers):

    gunicorn -c python:orchestrator_site.gunicorn_conf orchestrator_site.asgi:application \\
        --workers N

Why ASGI: an event stream (`GET /api/v1/deployments/{id}/events`, updates/api/events.py) is a
coroutine here, so hundreds of open streams hold no request thread.

Everything else is the WSGI application, run on a fixed pool of `ORCH_WEB_THREADS` threads per
worker exactly as gunicorn's gthread workers ran it: each thread keeps its database connection, a
request waits for a free thread, and the request body is read as the view reads it — an upload is
streamed into the data store by the upload handlers (and refused at its declared length before a
byte is read), not first spooled whole by the server as Django's ASGI handler would. The streams
go through Django's ASGI handler; their view borrows a pool thread only while it runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponseBase

from orchestrator_site.slowbody import falls_behind_at, log_cut

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

# The routes whose response outlives its view: served as ASGI, their body costs no thread.
STREAMS = re.compile(r"^/api/v1/deployments/[^/]+/events$")

Message = dict[str, Any]


class ClientGone(OSError):
    """The client closed the connection while its request body was being read."""


class _Body:
    """`wsgi.input` over the ASGI receive channel: the worker thread asks the event loop for the
    next piece of the body only when the view reads it."""

    def __init__(
        self,
        receive: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        pace: tuple[float, float],
        peer: str,
    ) -> None:
        self.receive, self.loop = receive, loop
        self.buffer = bytearray()
        self.more = True
        # docs/security.md §6: after `grace` seconds the body must have come at `rate` bytes a
        # second on average, or it is cut (this thread is freed; the client gets a 408).
        self.grace, self.rate = pace
        self.peer = peer
        self.started = time.monotonic()
        self.received = 0
        self.cut = False

    def _patience(self) -> float | None:
        """How long the next piece may take before the body falls behind its pace."""
        if self.rate <= 0:
            return None
        due = falls_behind_at(started=self.started, received=self.received, grace=self.grace, rate=self.rate)
        return max(due - time.monotonic(), 0.0)

    def _pull(self) -> None:
        if self.cut:
            self.more = False
            return
        pending = asyncio.run_coroutine_threadsafe(self.receive(), self.loop)
        try:
            message: Message = pending.result(timeout=self._patience())
        except concurrent.futures.TimeoutError:
            pending.cancel()
            self.cut, self.more = True, False
            took = time.monotonic() - self.started
            log_cut(
                peer=self.peer,
                took=took,
                received=self.received,
                length=None,
                grace=self.grace,
                rate=self.rate,
            )
            return  # the view sees the body end here; its answer is replaced by a 408
        if message["type"] == "http.disconnect":
            self.more = False
            raise ClientGone("the client went away during the request body")
        piece = message.get("body", b"")
        self.received += len(piece)
        self.buffer += piece
        self.more = message.get("more_body", False)

    def read(self, size: int = -1) -> bytes:
        while self.more and (size < 0 or len(self.buffer) < size):
            self._pull()
        size = len(self.buffer) if size < 0 else min(size, len(self.buffer))
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def readline(self, size: int = -1) -> bytes:
        while self.more and b"\n" not in self.buffer and (size < 0 or len(self.buffer) < size):
            self._pull()
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        return self.read(end if size < 0 else min(end, size))


def _environ(scope: Message, body: _Body) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP scope (PEP 3333 strings: latin-1 over the raw bytes)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode().decode("latin-1"),
        "PATH_INFO": scope["path"].encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").upper().replace("-", "_"), raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        if key in environ:  # a repeated header: one value, as a WSGI server joins them
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


class Application:
    """Streams through Django's ASGI handler, everything else through its WSGI handler on the
    worker's pool of threads."""

    def __init__(self, threads: int, pace: tuple[float, float] = (0.0, 0.0)) -> None:
        self.threads = threads
        self.pace = pace  # (grace seconds, minimum bytes a second) of a request body
        self.wsgi = WSGIHandler()
        self.streams = _StreamHandler(self)
        self._pool: asyncio.Queue[ThreadPoolExecutor] | None = None

    def executors(self) -> asyncio.Queue[ThreadPoolExecutor]:
        if self._pool is None:  # made in the worker's event loop, on its first request
            self._pool = asyncio.Queue()
            for n in range(self.threads):
                self._pool.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"web-{n}"))
        return self._pool

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop: say so, as the protocol asks
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if STREAMS.match(scope.get("path", "")):
            await self.streams(scope, receive, send)
            return
        pool = self.executors()
        executor = await pool.get()
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(executor, self._serve, scope, receive, send, loop)
        finally:
            pool.put_nowait(executor)

    def _serve(self, scope: Message, receive: Any, send: Any, loop: asyncio.AbstractEventLoop) -> None:
        """One request on this pool thread: the WSGI app, its answer sent piece by piece."""

        def emit(message: Message) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        head: list[Message] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # .strip(): Django writes a cookie as " name=value; …" (gunicorn strips it too).
            pairs = [
                (k.encode("latin-1"), v.strip().encode("latin-1")) for k, v in headers
            ]  # case kept, as Django's ASGI handler
            head[:] = [{"type": "http.response.start", "status": int(status.split()[0]), "headers": pairs}]
            return lambda data: None  # the legacy write(): Django never calls it

        client = scope.get("client") or ("?", 0)
        body = _Body(receive, loop, self.pace, str(client[0]))
        try:
            result: Iterable[bytes] = self.wsgi(_environ(scope, body), start_response)
        except ClientGone:
            return
        if body.cut:  # the view saw a cut-off body: its answer is no answer to this request
            close = getattr(result, "close", None)
            if close is not None:
                close()
            emit({"type": "http.response.start", "status": 408, "headers": [(b"connection", b"close")]})
            emit({"type": "http.response.body", "body": b"request body too slow\n", "more_body": False})
            return
        try:
            for chunk in result:
                if head:
                    emit(head.pop())
                if chunk:
                    emit({"type": "http.response.body", "body": chunk, "more_body": True})
            if head:
                emit(head.pop())
            emit({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


class _StreamHandler(ASGIHandler):
    """Django's ASGI handler for the streams: their view (checks, first query) runs on a pool
    thread, their frames are sent by the event loop."""

    def __init__(self, app: Application) -> None:
        super().__init__()
        self.app = app

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        # Not Django's per-request ThreadSensitiveContext: its thread would idle for as long as the
        # stream stays open. The few sync calls outside the view (the request signals) run on
        # asgiref's one shared thread instead.
        await self.handle(scope, receive, send)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        pool = self.app.executors()
        executor = await pool.get()
        try:
            async with ThreadSensitiveContext(executor=executor):
                return await super().get_response_async(request)
        finally:
            pool.put_nowait(executor)


def _application() -> Application:
    import django

    django.setup(set_prefix=False)
    from django.conf import settings

    return Application(
        threads=settings.WEB_THREADS, pace=(settings.BODY_GRACE_SECONDS, settings.BODY_MIN_BYTES_PER_SECOND)
    )


application = _application()
