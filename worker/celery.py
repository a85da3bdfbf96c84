"""The Celery app: configuration comes from Django settings (`CELERY_*`, one env-driven file).

Start a worker with the standard command (`celery -A worker worker -P prefork`); the task
bodies are in `worker/tasks.py` and only adapt a message to one service in `updates/`.
"""

from __future__ import annotations

import logging
import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

# Task names are a wire contract, kept in updates/tasknames.py (re-exported here for the worker).
from updates.tasknames import TASK_RECOVER, TASK_REFRESH, TASK_RESUME, TASK_ROLLBACK, TASK_RUN
from worker.driftwatch import DriftWatch
from worker.heartbeat import Heartbeat
from worker.takeover import Takeover

app = Celery("orchestrator", include=["worker.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.steps["consumer"].add(Heartbeat)  # what /api/v1/health calls a live worker
app.steps["consumer"].add(Takeover)  # surviving workers continue a dead worker's deployment
app.steps["consumer"].add(DriftWatch)  # the refresh every drift.interval of policy.yaml


class _BrokerByScheme(logging.Filter):
    """Celery's "Connected to redis://…" names the broker by its URL, which can carry a user and
    (masked or not) credentials: the line keeps only the URL's scheme."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Connected to %s" and record.args:
            url = str(record.args[0] if isinstance(record.args, tuple) else record.args)
            record.msg, record.args = "Connected to the broker (%s)", (url.split("://", 1)[0],)
        return True


BROKER_BY_SCHEME = _BrokerByScheme()


@celeryd_init.connect
def _logging_early(**kwargs: Any) -> None:
    """Before Celery's own checks: its warnings (running as root, say) become log lines too."""
    _logging()
    logging.captureWarnings(True)


@setup_logging.connect
def _logging(loglevel: int | None = None, **kwargs: Any) -> None:
    """Our LOGGING (ORCH_LOG_FORMAT, LOG_LEVEL) instead of Celery's own setup, so the worker's
    lines (Celery's "Task ... received" too) have the format of every other process; a receiver
    here is what stops Celery from replacing the root logger's handlers. `-l` still counts: the
    more verbose of it and LOG_LEVEL wins."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    logging.getLogger("celery.worker.consumer.connection").addFilter(BROKER_BY_SCHEME)  # once
    root = logging.getLogger()
    if loglevel:
        root.setLevel(min(root.level, loglevel))


__all__ = ["TASK_RECOVER", "TASK_REFRESH", "TASK_RESUME", "TASK_ROLLBACK", "TASK_RUN", "app"]
