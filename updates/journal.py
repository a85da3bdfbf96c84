"""The engine's `Journal`, written as database rows.

Every interface call becomes a `Step` row *before* it starts and is completed after it ends;
the run position is written to the deployment before every state. All writes go through one
dedicated thread: SQLite has a single writer anyway, and the engine calls us from a thread per
component, which would otherwise each open (and leak) a connection. That thread commits the
writes that queued up meanwhile together (group commit): ten components starting a state at once
cost one fsync, not ten, and each caller still waits until its own row is durable.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

from django.db import connection, transaction
from django.utils import timezone

from updates.engine.interface import CallResult
from updates.engine.machine import RunState
from updates.models import Deployment, Step, StepEvent

T = TypeVar("T")
EXCERPT = 16 * 1024


class _GroupWriter:
    """One thread, one connection; runs queued writes in batches, one transaction each."""

    BATCH = 64

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name="journal", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> T:
        future: Future[object] = Future()
        self._queue.put((fn, future))
        return future.result()  # type: ignore[return-value]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._run(batch)
        finally:
            connection.close()

    def _next_batch(self) -> list[tuple[Callable[[], object], Future[object]]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # finish this batch, then stop
                break
            batch.append(item)
        return batch

    def _run(self, batch: list[tuple[Callable[[], object], Future[object]]]) -> None:
        try:
            with transaction.atomic():
                results = [fn() for fn, _ in batch]
        except Exception:
            # One failing write must not take the others down: retry them one by one.
            for fn, future in batch:
                try:
                    future.set_result(fn())
                except Exception as exc:
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


class DbJournal:
    def __init__(self, deployment: Deployment, *, echo: Callable[[str], None] | None = None) -> None:
        self.deployment_id = deployment.pk
        self.echo = echo or (lambda line: None)
        self._writer = _GroupWriter()
        self._labels: dict[int, tuple[str, str, float]] = {}

    def close(self) -> None:
        self._writer.close()

    def _write(self, fn: Callable[[], T]) -> T:
        return self._writer.submit(fn)

    def checkpoint(self, state: RunState) -> None:
        data = state.to_json()
        self._write(lambda: Deployment.objects.filter(pk=self.deployment_id).update(position=data))

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int:
        def insert() -> int:
            step = Step.objects.create(
                deployment_id=self.deployment_id,
                component=component,
                state=state,
                argv=list(argv),
                started_at=timezone.now(),
            )
            StepEvent.objects.create(deployment_id=self.deployment_id, step=step, kind="started")
            return int(step.pk)

        step = self._write(insert)
        self._labels[step] = (component, state, time.monotonic())
        return step

    def call_finished(
        self, step: int, *, result: CallResult | None, answer: str | None = None, error: str | None = None
    ) -> None:
        fields = _finished_fields(result, answer, error)
        self._write(lambda: _step_finish(self.deployment_id, step, fields))
        self.echo(self._line(step, fields))

    def _line(self, step: int, fields: dict[str, object]) -> str:
        component, state, started = self._labels.pop(step)
        seconds = time.monotonic() - started
        status = "ok" if not fields.get("error") and fields.get("exit_code") in (0, None) else "FAILED"
        extra = f" -> {fields['answer']}" if fields.get("answer") else ""
        error = f"  ({fields['error']})" if fields.get("error") else ""
        return f"{component:<24} {state:<30} {status}{extra} {seconds:.2f}s{error}"


def _step_finish(deployment_id: int, step: int, fields: dict[str, object]) -> None:
    Step.objects.filter(pk=step).update(**fields)
    StepEvent.objects.create(deployment_id=deployment_id, step_id=step, kind="finished")


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
