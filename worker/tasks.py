"""Thin tasks: take ids, call one service in `updates/services/dispatch.py`.

Every setting that makes long, side-effecting work safe (late ack, requeue on a lost worker,
prefetch 1, no time limits, JSON, no results) is in `orchestrator_site/settings.py`.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_ready
from django.conf import settings

from updates.engine.manifest import InputError
from updates.services import dispatch, hooks
from updates.services.dispatch import queue_folders_create
from updates.services.environment import environment_load
from updates.tasknames import TASK_FETCH, TASK_RECOVER, TASK_REFRESH, TASK_RESUME, TASK_ROLLBACK, TASK_RUN
from worker.celery import app


@app.task(name=TASK_RUN)
def deployment_run(deployment_id: int) -> str:
    return dispatch.deployment_run(deployment_id=deployment_id)


@app.task(name=TASK_RESUME)
def deployment_resume(deployment_id: int, fingerprint: str, stop_before: list[str]) -> str:
    return dispatch.deployment_continue(
        deployment_id=deployment_id, fingerprint=fingerprint, rollback=False, stop_before=stop_before
    )


@app.task(name=TASK_ROLLBACK)
def deployment_rollback(deployment_id: int, fingerprint: str) -> str:
    return dispatch.deployment_continue(deployment_id=deployment_id, fingerprint=fingerprint, rollback=True)


@app.task(name=TASK_RECOVER)
def deployments_recover(dead_owner: str = "") -> str:
    return dispatch.deployments_recover(dead_owner=dead_owner)


# Queries only, so a time limit cannot leave a half-done state behind.
@app.task(name=TASK_REFRESH, soft_time_limit=3600, time_limit=3700)
def components_refresh() -> str:
    return dispatch.components_refresh()


# The fetch has its own deadline (ORCH_HOOKS_FETCH_SECONDS); the ingest after it reads local files.
@app.task(name=TASK_FETCH)
def webhook_fetch(event_pk: int) -> str:
    return hooks.hook_fetch_run(event_pk=event_pk)


@worker_init.connect
def _check_config(**kwargs: Any) -> None:
    """Refuse to start on a configuration every task would fail on (unreadable data store, bad
    mender-orchestrator.conf), or when Redis would redeliver a message while an interface call
    still runs. Better no worker and a clear message than one that fails every deployment."""
    try:
        queue_folders_create()
        longest = environment_load().config.interface_timeout_seconds
    except (OSError, InputError) as exc:
        raise SystemExit(f"worker refuses to start: {exc}") from exc
    if app.conf.broker_url.startswith("redis") and longest >= settings.CELERY_VISIBILITY_TIMEOUT:
        # SystemExit, not an Exception: Celery's Signal.send logs and swallows a handler's
        # Exception (its send is Django's send_robust), so the ImproperlyConfigured raised here
        # before only printed a traceback and the worker started anyway. SystemExit ends the
        # `celery worker` command with status 1 and this message on stderr.
        raise SystemExit(
            f"worker refuses to start: CELERY_VISIBILITY_TIMEOUT ({settings.CELERY_VISIBILITY_TIMEOUT} s) "
            f"must exceed InterfaceTimeoutSeconds ({longest} s)"
        )


@worker_ready.connect
def _recover(**kwargs: Any) -> None:
    # After a power cut or a killed worker nobody else will look: the appliance has no operator.
    dispatch.deployments_recover_start()
    if settings.REFRESH_ON_WORKER_START:
        # The web server answers from the stored answers (ORCH_INTERFACE_QUERIES=stored): make
        # them fresh after a boot. Skipped by the task itself while a deployment runs.
        dispatch.components_refresh_start()
