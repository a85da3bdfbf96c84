"""The consumer step that writes this worker's heartbeat (`updates/liveness.py` reads them).

A consumer step, started after the broker connection: when the connection is lost Celery stops
the consumer's steps until it reconnects, so the beats stop too and `/api/v1/health` reports no
live worker while this one cannot take work. The beat runs on the consumer's timer (the event
loop with Redis, a timer thread with the file-system broker).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery import bootsteps

from updates.liveness import HEARTBEAT_SECONDS, heartbeat_remove, heartbeat_write

log = logging.getLogger("orchestrator.heartbeat")


class Heartbeat(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.started_at = datetime.now(UTC)
        self.timer: Any = None

    def start(self, c: Any) -> None:
        beat = {"name": c.hostname, "broker": c.connection.transport.driver_type}
        self._beat(beat)
        self.timer = c.timer.call_repeatedly(HEARTBEAT_SECONDS, self._beat, (beat,))

    def _beat(self, beat: dict[str, str]) -> None:
        try:
            heartbeat_write(name=beat["name"], broker=beat["broker"], started_at=self.started_at)
        except OSError as exc:  # a full disk: say so, keep consuming (health will report it)
            log.error("cannot write the worker heartbeat: %s", exc)

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)
        heartbeat_remove(name=c.hostname)
