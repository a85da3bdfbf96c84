"""The Celery app that sends the worker's tasks, loaded when a task is first sent.

`updates` does not import the worker package (docs/architecture.md: the worker depends on us,
not back), so `orchestrator_site` registers how to load the app. Loading it costs a start-up
(Celery, kombu and the worker's boot steps) that most processes never need: the command line
runs its deployments itself and sends no task (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

_loaders: list[Callable[[], Celery]] = []


def celery_app_register(load: Callable[[], Celery]) -> None:
    """How to load the app (`orchestrator_site` registers it when the settings load)."""
    _loaders[:] = [load]


def celery_app() -> Celery:
    """The configured app; loaded on the first call."""
    if not _loaders:
        raise RuntimeError(
            "no Celery app registered: DJANGO_SETTINGS_MODULE must be orchestrator_site.settings"
        )
    return _loaders[0]()
