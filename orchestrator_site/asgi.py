"""The ASGI application `bin/run` and the web unit serve (gunicorn with uvicorn workers):

    gunicorn -c python:orchestrator_site.gunicorn_conf orchestrator_site.asgi:application \\
        --worker-class uvicorn_worker.UvicornWorker ...

Why ASGI: an event stream (`GET /api/v1/deployments/{id}/events`, updates/api/events.py) is a
coroutine here, so hundreds of open streams hold no request thread.

Why not Django's stock ASGI handler: it runs every request's synchronous code (our views, the
ORM) on a thread created for that request, so nothing bounds them and each request opens its own
database connection. Here each worker keeps `ORCH_WEB_THREADS` threads, each with its own
persistent connection, like gunicorn's gthread workers did: a request waits for a free thread. An
event stream borrows a thread only while its view runs (the checks, the first query); its frames
are then sent by the event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

# The routes whose response outlives its view: their view gets a pooled thread, their body none.
STREAMS = re.compile(r"^/api/v1/deployments/[^/]+/events$")


class PooledASGIHandler(ASGIHandler):
    """Django's ASGI handler with a fixed pool of threads (see the module's docstring)."""

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.threads = threads
        self._pool: asyncio.Queue[ThreadPoolExecutor] | None = None

    def _executors(self) -> asyncio.Queue[ThreadPoolExecutor]:
        if self._pool is None:  # made in the worker's event loop, on its first request
            self._pool = asyncio.Queue()
            for n in range(self.threads):
                self._pool.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"web-{n}"))
        return self._pool

    async def _pooled(self, call: Any) -> Any:
        pool = self._executors()
        executor = await pool.get()
        try:
            async with ThreadSensitiveContext(executor=executor):
                return await call()
        finally:
            pool.put_nowait(executor)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop: say so, as the protocol asks
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "http" and STREAMS.match(scope.get("path", "")):
            await self.handle(scope, receive, send)  # get_response_async borrows a thread
        else:
            await self._pooled(lambda: super(PooledASGIHandler, self).__call__(scope, receive, send))

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        if STREAMS.match(request.path):
            response: HttpResponseBase = await self._pooled(
                lambda: super(PooledASGIHandler, self).get_response_async(request)
            )
            return response
        return await super().get_response_async(request)


def _application() -> PooledASGIHandler:
    import django

    django.setup(set_prefix=False)
    from django.conf import settings

    return PooledASGIHandler(threads=settings.WEB_THREADS)


application = _application()
