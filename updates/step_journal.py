"""The engine's `Journal`, written as database rows.

Every interface call becomes a `Step` row *before* it starts and is completed after it ends;
the run position is written to the deployment before every state. All writes go through one
dedicated thread: SQLite has a single writer anyway, and the engine calls us from a thread per
component, which would otherwise each open (and leak) a connection. That thread commits the
writes that queued up meanwhile together (group commit): ten components starting a state at once
cost one fsync, not ten, and each caller still waits until its own row is durable before its
call starts. A finished step is queued without waiting: whatever its thread writes next commits
after it (one queue, one writer), so nothing starts before the rows before it are durable.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import Field, Model
from django.utils import timezone

from audit.chain import iso, sha256_hex
from audit.services import EntryRow, journal_batch, journal_record
from updates.actors import Actor
from updates.engine.interface import QUERY_STATES, CallResult
from updates.engine.machine import RunState
from updates.logcontext import current_call
from updates.models import Deployment, Step, StepEvent

T = TypeVar("T")
EXCERPT = 16 * 1024
# One line per state per component, for the journal (the CLI prints its own lines on stdout).
log = logging.getLogger("orchestrator.deployment")


class _GroupWriter:
    """One thread, one connection; runs queued writes in batches, one transaction each."""

    BATCH = 64

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = (
            queue.SimpleQueue()
        )
        # In the run's context: what the database layer logs carries the deployment id too.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name="journal", daemon=True)
        self._posted_error: BaseException | None = None
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the writer's next transaction and wait until it is committed. Everything
        posted before commits in the same transaction or an earlier one (one queue, one thread)."""
        future: Future[object] = Future()
        self._queue.put((fn, future))
        result = future.result()
        self._raise_posted()
        return result  # type: ignore[return-value]

    def post(self, fn: Callable[[], object]) -> None:
        """Queue `fn` without waiting: it commits before (or with) the next `submit` of any
        caller. A failure is raised by that `submit`, or by `close`."""
        future: Future[object] = Future()
        future.add_done_callback(self._note_failure)
        self._queue.put((fn, future))

    def _note_failure(self, future: Future[object]) -> None:
        if future.exception() is not None and self._posted_error is None:
            self._posted_error = future.exception()

    def _raise_posted(self) -> None:
        if self._posted_error is not None:
            error, self._posted_error = self._posted_error, None
            raise error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise_posted()

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
        # The calls of a barrier start in their threads at once, but the first row wakes this
        # thread alone: let the others queue theirs, so the barrier costs one commit, not two.
        time.sleep(0)
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
            with transaction.atomic(), journal_batch():
                # The batch's started rows, then its finished rows, each kind in bulk
                # statements: one transaction either way, and the ORM building statements per
                # row was most of the batch. A batch never starts and finishes the same step (a
                # call starts only once its row committed). The rest (run positions) last: the
                # journal's head is locked before the deployment row's update, as when the
                # finished rows were queued before the checkpoint (PostgreSQL: no deadlock
                # with `deployment_close`, which takes them in that order).
                ids = iter(_insert_started([fn for fn, _ in batch if isinstance(fn, _Start)]))
                _record_finished([fn for fn, _ in batch if isinstance(fn, _Finish)])
                results = [_run_one(fn, ids) for fn, _ in batch]
        except Exception:
            # One failing write must not take the others down: retry them one by one (each
            # still atomic: a step row never commits without its journal entry).
            for fn, future in batch:
                try:
                    with transaction.atomic():
                        result = fn()
                    future.set_result(result)
                except Exception as exc:
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


@dataclass(frozen=True)
class _Start:
    """A started step row to insert; the writer inserts a batch's rows together."""

    deployment_id: int
    component: str
    state: str
    argv: list[str]
    started_at: datetime

    def __call__(self) -> int:
        return _insert_started([self])[0]


def _run_one(fn: Callable[[], object], started_ids: Iterator[int]) -> object:
    """One write of a batch: a started row's id, nothing for a finished row (both written
    already), anything else run now."""
    if isinstance(fn, _Start):
        return next(started_ids)
    if isinstance(fn, _Finish):
        return None
    return fn()


def _insert_started(starts: Sequence[_Start]) -> list[int]:
    """Insert the step rows and their `started` events; the rows' ids, in order. One prepared
    INSERT per row (its id back from RETURNING, so each caller gets its own row's id whatever
    order a multi-row RETURNING would use) and one executemany for the events: the ORM building
    its statements took most of the batch."""
    if not starts:
        return []
    fields = _step_fields()
    insert, event = _started_statements(connection.vendor)
    ids = []
    with connection.cursor() as cursor:
        for start in starts:
            values: dict[str, object] = {
                "deployment_id": start.deployment_id,
                "component": start.component,
                "state": start.state,
                "argv": start.argv,
                "started_at": start.started_at,
            }
            row = [
                field.get_db_prep_save(
                    values[field.attname] if field.attname in values else field.get_default(), connection
                )
                for field in fields
            ]
            cursor.execute(insert, row)
            ids.append(int(cursor.fetchone()[0]))
        cursor.executemany(
            event, [(start.deployment_id, pk, "started") for start, pk in zip(starts, ids, strict=True)]
        )
    return ids


def _step_fields() -> list[Field[Any, Any]]:
    """Every column of a step row but its id (the others get their defaults when it starts)."""
    return [field for field in Step._meta.concrete_fields if not field.primary_key]


@functools.cache
def _started_statements(vendor: str) -> tuple[str, str]:
    """INSERT of a started step's row (returning its id) and of its event, as the database
    `vendor` quotes them (the cache's key: one process talks to one database)."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in _step_fields())
    marks = ", ".join("%s" for _ in _step_fields())
    insert = f"INSERT INTO {quote(Step._meta.db_table)} ({columns}) VALUES ({marks}) RETURNING {quote('id')}"
    return insert, _event_statement()


def _event_statement() -> str:
    quote = connection.ops.quote_name
    names = ", ".join(_columns(StepEvent, ("deployment", "step", "kind")))
    return f"INSERT INTO {quote(StepEvent._meta.db_table)} ({names}) VALUES (%s, %s, %s)"


class DbJournal:
    def __init__(self, deployment: Deployment, *, echo: Callable[[str], None] | None = None) -> None:
        self.deployment_id = deployment.pk
        self.actor = deployment.who  # the journal's entries for its steps name who asked for the run
        self.echo = echo or (lambda line: None)
        self._writer = _GroupWriter()
        self._calls: dict[int, _Call] = {}
        self._phase = ""

    def close(self) -> None:
        self._writer.close()

    def _write(self, fn: Callable[[], T]) -> T:
        return self._writer.submit(fn)

    def checkpoint(self, state: RunState) -> None:
        data = state.to_json()
        self._write(lambda: Deployment.objects.filter(pk=self.deployment_id).update(position=data))
        self._log_phase(state)

    def _log_phase(self, state: RunState) -> None:
        """A line when the run enters a phase; entering rollback is the decision to roll back."""
        if state.phase == self._phase or state.phase == "done":
            return
        self._phase = state.phase
        if state.phase == "rollback":
            log.warning(
                "rolling back from group %d: %s", state.group, state.reason, extra={"phase": state.phase}
            )
        else:
            log.info("%s phase", state.phase, extra={"phase": state.phase})

    def call_started(self, *, component: str, state: str, argv: Sequence[str]) -> int:
        call = _Call(component, state, list(argv), timezone.now(), time.monotonic())
        # Set in the component's own thread (each runs in a copy of the run's context) until
        # call_finished: lines logged during the call carry its component and state.
        current_call.set((component, state))
        log.log(logging.DEBUG if state in QUERY_STATES else logging.INFO, "%s %s started", component, state)

        step = self._write(_Start(self.deployment_id, component, state, call.argv, call.started_at))
        self._calls[step] = call
        return step

    def call_finished(
        self, step: int, *, result: CallResult | None, answer: str | None = None, error: str | None = None
    ) -> None:
        fields = _finished_fields(result, answer, error)
        call = self._calls.pop(step)
        # Not waited for: the component's next row (its next call, or the state's checkpoint)
        # is written by the same thread after it, so it is durable before anything else runs;
        # a crash before that leaves the step open, which recovery reads as interrupted.
        self._writer.post(_Finish(self.deployment_id, step, call, fields, self.actor))
        _log_finished(call, fields)
        current_call.set(None)
        self.echo(_line(call, fields))


@dataclass(frozen=True)
class _Call:
    component: str
    state: str
    argv: list[str]
    started_at: datetime
    started: float  # monotonic, for the echoed duration


def step_journal(
    deployment_id: int, step: int, call: _Call, fields: dict[str, object], *, actor: Actor
) -> EntryRow:
    """The journal entry of a finished step: what ran, how it ended, and digests of its output
    (the output itself stays in the step row, which retention may clear; the digests stay).
    `actor`: who asked for the deployment (the engine runs its steps for them)."""
    ended = fields["ended_at"]
    assert isinstance(ended, datetime)
    return journal_record(
        kind="step.finished",
        actor=actor,
        subject=f"deployment:{deployment_id}",
        data={
            "step": step,
            "component": call.component,
            "state": call.state,
            "argv": list(call.argv),
            "started_at": iso(call.started_at),
            "ended_at": iso(ended),
            "duration_ms": round((ended - call.started_at).total_seconds() * 1000),
            "exit_code": fields.get("exit_code"),
            "timed_out": bool(fields.get("timed_out", False)),
            "answer": fields["answer"],
            "error": fields["error"],
            "stdout_sha256": sha256_hex(str(fields.get("stdout", "")).encode()),
            "stderr_sha256": sha256_hex(str(fields.get("stderr", "")).encode()),
        },
    )


def step_journal_row(step: Step) -> None:
    """The same entry from a step row (steps closed as interrupted after a crash)."""
    call = _Call(step.component, step.state, list(step.argv), step.started_at, 0.0)
    fields: dict[str, object] = {
        "ended_at": step.ended_at,
        "exit_code": step.exit_code,
        "timed_out": step.timed_out,
        "answer": step.answer,
        "error": step.error,
        "stdout": step.stdout,
        "stderr": step.stderr,
    }
    entry = step_journal(step.deployment_id, step.pk, call, fields, actor=step.deployment.who)
    Step.objects.filter(pk=step.pk).update(seal=entry.hash)


def _succeeded(fields: dict[str, object]) -> bool:
    return not fields.get("error") and fields.get("exit_code") in (0, None)


def _log_finished(call: _Call, fields: dict[str, object]) -> None:
    seconds = round(time.monotonic() - call.started, 3)
    extra = {
        "exit_code": fields.get("exit_code"),
        "duration_s": seconds,
        "answer": fields.get("answer") or None,
    }
    answer = f" -> {fields['answer']}" if fields.get("answer") else ""
    if _succeeded(fields):
        # Queries (Provides, NeedsArtifactReboot, ...) only at DEBUG: at INFO a run reads as its states.
        level = logging.DEBUG if call.state in QUERY_STATES else logging.INFO
        log.log(level, "%s %s done in %.2f s%s", call.component, call.state, seconds, answer, extra=extra)
    else:
        log.warning(
            "%s %s failed after %.2f s: %s", call.component, call.state, seconds, fields["error"], extra=extra
        )


def _line(call: _Call, fields: dict[str, object]) -> str:
    component, state = call.component, call.state
    seconds = time.monotonic() - call.started
    status = "ok" if _succeeded(fields) else "FAILED"
    extra = f" -> {fields['answer']}" if fields.get("answer") else ""
    error = f"  ({fields['error']})" if fields.get("error") else ""
    return f"{component:<24} {state:<30} {status}{extra} {seconds:.2f}s{error}"


@dataclass(frozen=True)
class _Finish:
    """A finished step to record: its row, its `finished` event and its journal entry. The
    writer records a batch's finished steps together (`_record_finished`)."""

    deployment_id: int
    step: int
    call: _Call
    fields: dict[str, object]
    actor: Actor

    def __call__(self) -> None:
        _record_finished([self])


# What a finished step writes into its row. A call without a result (the host's reboot command,
# a Download that never started) writes the started row's own values into exit_code, timed_out,
# stdout and stderr.
_FINISHED_COLUMNS = ("ended_at", "exit_code", "timed_out", "answer", "error", "stdout", "stderr", "seal")
_FINISHED_DEFAULTS: dict[str, object] = {"exit_code": None, "timed_out": False, "stdout": "", "stderr": ""}


def _record_finished(finishes: Sequence[_Finish]) -> None:
    """The finished steps' journal entries, then their rows and `finished` events in two
    statements run once per row (executemany) instead of an ORM UPDATE and INSERT built per
    row, which was most of the writer's time. Each row and its entry commit together (issue
    11); the row keeps the entry's hash (its seal), which `audit verify` checks it against."""
    if not finishes:
        return
    columns = _fields(Step, _FINISHED_COLUMNS)
    rows = []
    for finish in finishes:
        entry = step_journal(
            finish.deployment_id, finish.step, finish.call, finish.fields, actor=finish.actor
        )
        values = {**_FINISHED_DEFAULTS, **finish.fields, "seal": entry.hash}
        rows.append(
            [field.get_db_prep_save(values[field.name], connection) for field in columns] + [finish.step]
        )
    events = [(finish.deployment_id, finish.step, "finished") for finish in finishes]
    update, insert = _finished_statements(connection.vendor)
    with connection.cursor() as cursor:
        cursor.executemany(update, rows)
        cursor.executemany(insert, events)


def _fields(model: type[Model], names: Sequence[str]) -> list[Field[Any, Any]]:
    fields = [model._meta.get_field(name) for name in names]
    return [field for field in fields if isinstance(field, Field)]


def _columns(model: type[Model], names: Sequence[str]) -> list[str]:
    quote = connection.ops.quote_name
    return [quote(str(field.column)) for field in _fields(model, names)]


@functools.cache
def _finished_statements(vendor: str) -> tuple[str, str]:
    """UPDATE of a finished step's row (its columns, then its id) and INSERT of its event, as
    the database `vendor` quotes them (the cache's key: one process talks to one database)."""
    quote = connection.ops.quote_name
    columns = ", ".join(f"{column} = %s" for column in _columns(Step, _FINISHED_COLUMNS))
    update = f"UPDATE {quote(Step._meta.db_table)} SET {columns} WHERE {quote('id')} = %s"
    return update, _event_statement()


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
