"""Registers the Celery app for the services that send tasks (`updates.celeryapp`), without
loading it: only a process that sends a task imports Celery (the command line never does)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from updates.celeryapp import celery_app_register

if TYPE_CHECKING:
    from celery import Celery


def _load_celery_app() -> Celery:
    from worker.celery import app  # the worker's own app: the same configuration, once per process

    return app


celery_app_register(_load_celery_app)
