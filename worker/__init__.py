"""Celery workers: `celery -A worker worker` finds `worker.app`."""

from worker.celery import app

__all__ = ["app"]
