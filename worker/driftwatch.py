"""The consumer step that keeps the drift watch of `policy.yaml` (docs/policy.md): every
DRIFT_TICK_SECONDS each worker asks whether `drift.interval` has passed since the last refresh
(the time is on the system's row, so it survives restarts and one worker of several claims it)
and then sends a refresh task; the refresh itself holds a lease, so only one runs at a time.
Runs on the consumer's timer, like the takeover check.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from django.db import DatabaseError, close_old_connections, connection

log = logging.getLogger("orchestrator.drift")
DRIFT_TICK_SECONDS = 5.0


class DriftWatch(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.timer: Any = None

    def start(self, c: Any) -> None:
        self.timer = c.timer.call_repeatedly(DRIFT_TICK_SECONDS, self._tick, ())

    def _tick(self) -> None:
        # Imported here: worker.celery (which adds this step) loads before Django's apps are ready.
        from updates.services.dispatch import drift_watch_tick

        try:
            close_old_connections()
            drift_watch_tick()
        except (DatabaseError, OSError) as exc:  # the database is away: the next tick tries again
            log.error("cannot check whether a drift refresh is due: %s", exc)
        finally:
            connection.close()  # the main process forks pool processes: it holds no connection

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
