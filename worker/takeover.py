"""The consumer step that lets a surviving worker continue a deployment whose owner died.

Without it, a deployment whose worker died (SIGKILL, OOM of the whole worker, its machine lost)
waits until some worker starts and runs the start recovery. Every TAKEOVER_SECONDS each worker
asks the one recovery decision (`updates.recovery.deployment_interrupted`); when a deployment was left
running by a dead owner it sends `deployments_recover`, which a pool process runs like any task,
and whose takeover is a conditional UPDATE: of several workers sending it, one continues.

An owner on this host is dead as soon as its process is gone; one on another host once its
host's heartbeats are older than the liveness window (updates/liveness.py, updates/liveness.py).
Runs on the consumer's timer, so it stops with the broker connection, like the heartbeat.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from django.db import DatabaseError, close_old_connections, connection

log = logging.getLogger("orchestrator.takeover")
TAKEOVER_SECONDS = 3.0


class TimerStep(bootsteps.StartStopStep):
    """A check run every `seconds` on the consumer's timer (it stops with the broker connection);
    a database that is away is logged and the next tick tries again."""

    requires = ("celery.worker.consumer.connection:Connection",)
    seconds = 1.0
    what = "run the check"

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.timer: Any = None

    def start(self, c: Any) -> None:
        self.timer = c.timer.call_repeatedly(self.seconds, self._check, ())

    def tick(self) -> None:
        raise NotImplementedError

    def _check(self) -> None:
        try:
            close_old_connections()
            self.tick()
        except (DatabaseError, OSError) as exc:  # the database is away: the next tick tries again
            log.error("cannot %s: %s", self.what, exc)
        finally:
            # The main process forks new pool processes: it must hold no database connection.
            connection.close()

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Takeover(TimerStep):
    seconds = TAKEOVER_SECONDS
    what = "check for an abandoned deployment"

    def tick(self) -> None:
        # Imported here: worker.celery (which adds this step) loads before Django's apps are ready.
        from updates.services.dispatch import deployment_takeover_start

        deployment_takeover_start()
