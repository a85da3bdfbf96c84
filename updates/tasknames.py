"""Names of the worker's tasks: a wire contract shared by the senders (updates/services/dispatch.py)
and the worker (worker/tasks.py). Queued messages outlive a deploy of new code: keep them stable.
No imports here, so the worker's Celery app can read them before Django is set up."""

TASK_RUN = "orchestrator.deployment_run"
TASK_RESUME = "orchestrator.deployment_resume"
TASK_ROLLBACK = "orchestrator.deployment_rollback"
TASK_REFRESH = "orchestrator.components_refresh"
TASK_RECOVER = "orchestrator.deployments_recover"
TASK_FETCH = "orchestrator.webhook_fetch"
