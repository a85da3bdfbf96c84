"""`GET /api/v1/health`: a list of named checks, each answering up or down with a detail.

A check is a function returning its detail, raising when its part is down.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.db import connection

from updates.celeryapp import celery_app
from updates.selectors import live_workers

Check = Callable[[], str]


def database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return str(connection.vendor)


def broker() -> str:
    app = celery_app()
    url: str = app.conf.broker_url
    if url.startswith("filesystem:"):
        # The embedded broker is its folders: they must exist (or be creatable) and be writable.
        options = app.conf.broker_transport_options or {}
        folder = Path(options["data_folder_in"])
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".health"
        probe.write_bytes(b"")
        probe.unlink()
        return f"filesystem ({folder})"
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return url.split("@")[-1].split("://")[0] if "@" in url else url.split("://")[0]


class NoLiveWorker(RuntimeError):
    pass


def worker() -> str:
    """At least one Celery worker beat recently (updates/liveness.py): deployments started from
    the web would otherwise wait in the queue with nobody to run them."""
    beats = live_workers()
    if not beats:
        raise NoLiveWorker("no live worker: deployments started here would wait in the queue")
    return ", ".join(f"{beat.name} (pid {beat.pid}, {beat.broker})" for beat in beats)


CHECKS: list[tuple[str, Check]] = [("database", database), ("broker", broker), ("worker", worker)]


def health_report() -> dict[str, dict[str, str]]:
    report = {}
    for name, check in CHECKS:
        try:
            report[name] = {"state": "up", "detail": check()}
        except Exception as exc:  # a health check reports every failure, it never raises
            report[name] = {"state": "down", "detail": f"{type(exc).__name__}: {exc}"}
    return report
