"""Reads of steps: one interface call each (the step journal, `updates/step_journal.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict

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
