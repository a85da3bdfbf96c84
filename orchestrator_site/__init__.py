"""Load the Celery app with Django (the usual Django + Celery layout), so services can send
tasks by name through `celery.current_app` without importing the worker package."""

from worker.celery import app as celery_app

__all__ = ["celery_app"]
