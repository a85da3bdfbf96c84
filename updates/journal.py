"""The engine's `Journal`, written as database rows.

Every interface call becomes a `Step` row *before* it starts and is completed after it ends;
the run position is written to the deployment before every state. All writes go through one
dedicated thread: SQLite has a single writer anyway, and the engine calls us from a thread per
component, which would otherwise each open (and leak) a connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections, connection
from django.utils import timezone

from updates.engine.interface import CallResult
from updates.engine.machine import RunState
from updates.models import Deployment, Step

T = TypeVar("T")
EXCERPT = 16 * 1024


class DbJournal:
    def __init__(self, deployment: Deployment, *, echo: Callable[[str], None] | None = None) -> None:
        self.deployment_id = deployment.pk
        self.echo = echo or (lambda line: None)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._labels: dict[int, tuple[str, str, float]] = {}

    def close(self) -> None:
        self._writer.submit(lambda: connection.close()).result()
        self._writer.shutdown()

    def _write(self, fn: Callable[[], T]) -> T:
        return self._writer.submit(fn).result()

    def checkpoint(self, state: RunState) -> None:
        data = state.to_json()
        self._write(lambda: Deployment.objects.filter(pk=self.deployment_id).update(position=data))

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int:
        def insert() -> int:
            close_old_connections()
            step = Step.objects.create(
                deployment_id=self.deployment_id,
                component=component,
                state=state,
                argv=list(argv),
                started_at=timezone.now(),
            )
            return int(step.pk)

        step = self._write(insert)
        self._labels[step] = (component, state, time.monotonic())
        return step

    def call_finished(
        self, step: int, *, result: CallResult | None, answer: str | None = None, error: str | None = None
    ) -> None:
        fields = _finished_fields(result, answer, error)
        self._write(lambda: Step.objects.filter(pk=step).update(**fields))
        self.echo(self._line(step, fields))

    def _line(self, step: int, fields: dict[str, object]) -> str:
        component, state, started = self._labels.pop(step)
        seconds = time.monotonic() - started
        status = "ok" if not fields.get("error") and fields.get("exit_code") in (0, None) else "FAILED"
        extra = f" -> {fields['answer']}" if fields.get("answer") else ""
        error = f"  ({fields['error']})" if fields.get("error") else ""
        return f"{component:<24} {state:<30} {status}{extra} {seconds:.2f}s{error}"


def _finished_fields(result: CallResult | None, answer: str | None, error: str | None) -> dict[str, object]:
    fields: dict[str, object] = {"ended_at": timezone.now(), "answer": answer or "", "error": error or ""}
    if result is not None:
        fields.update(
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            stdout=result.stdout[:EXCERPT],
            stderr=result.stderr[-EXCERPT:],
        )
        if not result.ok and not error:
            fields["error"] = "timed out" if result.timed_out else f"exit code {result.exit_code}"
    return fields
