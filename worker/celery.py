"""The Celery app: configuration comes from Django settings (`CELERY_*`, one env-driven file).

Start a worker with the standard command (`celery -A worker worker -P prefork`); the task
bodies are in `worker/tasks.py` and only adapt a message to one service in `updates/`.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

# Task names are a wire contract (queued messages outlive a deploy of new code): keep them stable.
TASK_RUN = "orchestrator.deployment_run"
TASK_RESUME = "orchestrator.deployment_resume"
TASK_ROLLBACK = "orchestrator.deployment_rollback"
TASK_REFRESH = "orchestrator.components_refresh"
TASK_RECOVER = "orchestrator.deployments_recover"

app = Celery("orchestrator", include=["worker.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")


def queue_folders_create() -> None:
    """The file-system transport neither creates its folders nor works without them."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
