"""Reads of steps: one interface call each (the step journal, `updates/step_journal.py`)."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from functools import cache
from typing import Any, NotRequired, TypedDict, cast

from django.db import connection
from django.db.models import QuerySet

from updates.engine.interface import QUERY_STATES
from updates.models import Deployment, Step, StepEvent

TAIL = 2000  # characters of output a step report carries; the log endpoint has all of it
# Mender states of the rollback path: drawn amber on the timeline, whatever their exit code.
ROLLBACK_STATES = frozenset(
    {"ArtifactRollback", "ArtifactRollbackReboot", "ArtifactVerifyRollbackReboot", "ArtifactFailure"}
)


class StepReport(TypedDict):
    """One step: the API's `StepOut`, the server-sent events, the pages' timeline blocks."""

    id: int
    component: str
    state: str
    argv: list[str]
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: float | None
    exit_code: int | None
    timed_out: bool
    answer: str
    error: str
    ok: bool
    output_tail: str
    status: NotRequired[str]  # `step_status`, added by the pages


class StepRecord(StepReport):
    """A step as `history --json` prints it: the report with the whole of stderr."""

    stderr: str


def deployment_steps(deployment: Deployment) -> QuerySet[Step]:
    return deployment.steps.order_by("id")


def step_get(*, deployment_id: int, step_id: int) -> Step | None:
    return Step.objects.filter(deployment_id=deployment_id, pk=step_id).first()


def step_events_after(*, deployment_id: int, after: int) -> list[StepEvent]:
    """The step changes of a deployment committed after event `after`, oldest first."""
    return list(
        StepEvent.objects.select_related("step")
        .filter(deployment_id=deployment_id, pk__gt=after)
        .order_by("id")
    )


def step_report(s: Step) -> StepReport:
    duration = (s.ended_at - s.started_at).total_seconds() if s.ended_at else None
    return {
        "id": s.pk,
        "component": s.component,
        "state": s.state,
        "argv": s.argv,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "duration_seconds": duration,
        "exit_code": s.exit_code,
        "timed_out": s.timed_out,
        "answer": s.answer,
        "error": s.error,
        "ok": s.ok,
        "output_tail": (s.stdout + s.stderr)[-TAIL:],
    }


_STEPS_SQL = (
    "SELECT id, component, state, argv, started_at, ended_at, exit_code, timed_out, answer, error, "
    f"stdout, stderr FROM {Step._meta.db_table} WHERE deployment_id = %s ORDER BY id"
)


def db_moment(value: Any) -> datetime | None:
    """A datetime column read by a plain cursor as the ORM returns it: aware, in the
    connection's zone (UTC). SQLite's driver gives naive datetimes (or text), PostgreSQL's aware ones."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=_db_zone())
    return cast(datetime, value)


@cache
def _db_zone() -> tzinfo:
    # The zone the database keeps naive datetimes in (settings, fixed for the process): read
    # once, `connection` is a per-thread proxy whose every attribute costs a lookup.
    return cast(tzinfo, connection.timezone)


def deployment_step_reports(deployment_id: int) -> list[StepReport]:
    """`step_report` of each of a deployment's steps, oldest first: one plain statement, no
    model instances (the detail's and the timeline's steps)."""
    with connection.cursor() as cursor:
        cursor.execute(_STEPS_SQL, [deployment_id])
        rows = cursor.fetchall()
    reports: list[StepReport] = []
    for pk, component, state, argv, started, ended, exit_code, timed_out, answer, error, out, err in rows:
        started_at, ended_at = cast(datetime, db_moment(started)), db_moment(ended)
        reports.append(
            {
                "id": pk,
                "component": component,
                "state": state,
                "argv": json.loads(argv) if isinstance(argv, str | bytes) else argv,
                "started_at": started_at,
                "ended_at": ended_at,
                "duration_seconds": (ended_at - started_at).total_seconds() if ended_at else None,
                "exit_code": exit_code,
                "timed_out": bool(timed_out),
                "answer": answer,
                "error": error,
                # `Step.ok`
                "ok": ended_at is not None and not error and exit_code in (0, None),
                "output_tail": (out + err)[-TAIL:],
            }
        )
    return reports


def step_record(s: Step) -> StepRecord:
    return {**step_report(s), "stderr": s.stderr}


def step_status(step: StepReport) -> str:
    """One word per timeline block: running, rollback, failed, query or done."""
    if step["ended_at"] is None:
        return "running"
    if step["state"] in ROLLBACK_STATES:
        return "rollback"
    if not step["ok"]:
        return "failed"
    return "query" if step["state"] in QUERY_STATES else "done"
