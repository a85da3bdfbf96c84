"""Slow request bodies are cut off in the app server (docs/security.md §6).

gunicorn's gthread workers read a request's body in the thread that serves it: a client sending
its body a byte a second holds that thread for as long as it likes, and 20 such clients hold all
of them, so even the health probe waits. The shipped nginx buffers every body before gunicorn
sees it (deploy/nginx), but gunicorn may be reached directly (`bin/run`, a deployment without
the proxy). So each body must keep up: after ORCH_BODY_GRACE_SECONDS, at least
ORCH_BODY_MIN_BYTES_PER_SECOND on average since the request began; a body that falls behind has
its connection shut down (one warning line), which ends the read in the serving thread and
frees it. Once the whole body is in, the request is not watched any more (storing and checking
a large upload may take minutes). One watchdog thread per process checks twice a second.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

log = logging.getLogger("orchestrator.web")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def falls_behind_at(*, started: float, received: int, grace: float, rate: float) -> float:
    """The monotonic time at which a body begun at `started`, with `received` bytes in, falls
    behind the pace (`rate` bytes a second on average after `grace` seconds) unless more comes:
    the one rule of the WSGI watchdog here and of the ASGI app (orchestrator_site/asgi.py)."""
    return started + grace + received / rate


def log_cut(*, peer: str, took: float, received: int, length: int | None, grace: float, rate: float) -> None:
    log.warning(
        "slow request body from %s cut off after %.0f s: %d of %s bytes received "
        "(below ORCH_BODY_MIN_BYTES_PER_SECOND=%g after ORCH_BODY_GRACE_SECONDS=%g)",
        peer,
        took,
        received,
        length if length is not None else "?",
        rate,
        grace,
    )


class _Body:
    """One request's body as it arrives: how much, since when, and its socket to shut down."""

    def __init__(self, sock: socket.socket, length: int | None, peer: str) -> None:
        self.sock = sock
        self.length = length
        self.peer = peer
        self.started = time.monotonic()
        self.received = 0
        self.done = length == 0
        self.cut = False

    def behind(self, now: float, grace: float, rate: float) -> bool:
        due = falls_behind_at(started=self.started, received=self.received, grace=grace, rate=rate)
        return not self.done and now > due

    def shut(self, how: int = socket.SHUT_RDWR) -> None:
        try:
            self.sock.shutdown(how)
        except OSError:
            pass  # closed already


_PIECE = 4096


class _Input:
    """wsgi.input, counting what the app reads."""

    def __init__(self, raw: IO[bytes], body: _Body) -> None:
        self.raw = raw
        self.body = body

    def _seen(self, data: bytes, asked: int | None) -> bytes:
        self.body.received += len(data)
        full = self.body.length is not None and self.body.received >= self.body.length
        if full or (not data and asked != 0):
            self.body.done = True
        return data

    def read(self, size: int | None = None) -> bytes:
        """In pieces of at most _PIECE bytes, so the watchdog sees a body arrive while one large
        read (Django reads a JSON body whole) is still waiting for the rest."""
        want = size if size is not None and size >= 0 else None
        parts: list[bytes] = []
        got = 0
        while want is None or got < want:
            piece = self._seen(self.raw.read(_PIECE if want is None else min(_PIECE, want - got)), 1)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def readline(self, size: int | None = None) -> bytes:
        return self._seen(self.raw.readline(size) if size is not None else self.raw.readline(), size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines: list[bytes] = self.raw.readlines(hint) if hint else self.raw.readlines()
        for line in lines:
            self._seen(line, None)
        if not hint:
            self.body.done = True  # read to the end
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class _Watchdog:
    def __init__(self) -> None:
        self.bodies: set[_Body] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, body: _Body, grace: float, rate: float) -> None:
        with self.lock:
            self.bodies.add(body)
            # Started here, in the serving process: a thread started before gunicorn forks its
            # workers would not exist in them.
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self.run, args=(grace, rate), name="slow-body-watchdog", daemon=True
                )
                self.thread.start()

    def discard(self, body: _Body) -> None:
        with self.lock:
            self.bodies.discard(body)

    def run(self, grace: float, rate: float) -> None:
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self.lock:
                late = [b for b in self.bodies if b.behind(now, grace, rate)]
                self.bodies.difference_update(late)
            for body in late:
                body.cut = True
                log_cut(
                    peer=body.peer,
                    took=now - body.started,
                    received=body.received,
                    length=body.length,
                    grace=grace,
                    rate=rate,
                )
                body.shut()


_watchdog = _Watchdog()


def slow_body_guard(app: WSGIApp, *, grace: float, rate: float) -> WSGIApp:
    """`app`, with its request bodies held to `rate` bytes a second after `grace` seconds.
    Only under gunicorn (which hands us the connection's socket); rate 0 turns it off."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        length = _length(environ)
        if rate <= 0 or not isinstance(sock, socket.socket) or length == 0 or _no_body(environ):
            return app(environ, start_response)
        body = _Body(sock, length, str(environ.get("REMOTE_ADDR", "?")))
        environ["wsgi.input"] = _Input(environ["wsgi.input"], body)
        _watchdog.add(body, grace, rate)
        try:
            result = app(environ, start_response)
        except BaseException:
            _watchdog.discard(body)
            raise
        if body.done:  # the usual case: nothing to watch, and the answer passes untouched
            _watchdog.discard(body)
            return result
        return _Closing(result, body)

    return guarded


class _Closing:
    """The app's answer; on close, the body stops being watched. A body the app left unread is
    not read by gunicorn afterwards either: the connection's reading side is shut, so gunicorn
    does not drain a slow client's rest in a thread before the next request (no keep-alive)."""

    def __init__(self, result: Iterable[bytes], body: _Body) -> None:
        self.result = result
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            _watchdog.discard(self.body)
            if not self.body.done:
                self.body.shut(socket.SHUT_RD)


def _length(environ: dict[str, Any]) -> int | None:
    value = str(environ.get("CONTENT_LENGTH") or "")
    return int(value) if value.isdigit() else None


def _no_body(environ: dict[str, Any]) -> bool:
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    return _length(environ) is None and not chunked
