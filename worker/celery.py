"""The Celery app: configuration comes from Django settings (`CELERY_*`, one env-driven file).

Start a worker with the standard command (`celery -A worker worker -P prefork`); the task
bodies are in `worker/tasks.py` and only adapt a message to one service in `updates/`.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

# Task names are a wire contract, kept in updates/tasknames.py (re-exported here for the worker).
from updates.tasknames import TASK_RECOVER, TASK_REFRESH, TASK_RESUME, TASK_ROLLBACK, TASK_RUN
from worker.heartbeat import Heartbeat
from worker.takeover import Takeover

app = Celery("orchestrator", include=["worker.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.steps["consumer"].add(Heartbeat)  # what /api/v1/health calls a live worker
app.steps["consumer"].add(Takeover)  # surviving workers continue a dead worker's deployment


__all__ = ["TASK_RECOVER", "TASK_REFRESH", "TASK_RESUME", "TASK_ROLLBACK", "TASK_RUN", "app"]
