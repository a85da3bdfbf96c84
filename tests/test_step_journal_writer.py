"""The step journal's writer thread: a finished step is queued without waiting, yet nothing
written after it commits before it, and a failure of a queued write is not lost."""

from __future__ import annotations

import pytest

from updates.actors import SYSTEM
from updates.engine.interface import CallResult
from updates.models import Deployment, Manifest, Step
from updates.step_journal import DbJournal, _GroupWriter

pytestmark = pytest.mark.django_db(transaction=True)  # the writer has its own connection

RESULT = CallResult(
    argv=("noop", "Download"),
    exit_code=0,
    stdout="ok\n",
    stderr="",
    started_at=0,
    ended_at=0,
    timed_out=False,
)


def _journal() -> DbJournal:
    manifest = Manifest.objects.create(
        name="sys-v2", form="current", sha256="0" * 64, raw="", source_path="m"
    )
    deployment = Deployment.objects.create(
        manifest=manifest, slot=None, status=Deployment.Status.SUCCEEDED, actor=SYSTEM.as_json()
    )
    return DbJournal(deployment)


def test_a_finished_step_is_durable_before_the_next_call_of_its_component_starts() -> None:
    journal = _journal()
    try:
        first = journal.call_started(component="c", state="Download", argv=["noop", "Download"])
        journal.call_finished(first, result=RESULT)  # queued, not waited for
        journal.call_started(component="c", state="ArtifactInstall", argv=["noop", "ArtifactInstall"])
        # Read on another connection: the finish committed no later than the next row.
        finished = Step.objects.get(pk=first)
        assert finished.ended_at is not None and finished.exit_code == 0 and finished.seal
    finally:
        journal.close()


def test_a_state_checkpoint_commits_after_the_finished_steps_before_it() -> None:
    journal = _journal()
    steps = [journal.call_started(component=f"c{i}", state="Download", argv=["noop"]) for i in range(5)]
    for step in steps:
        journal.call_finished(step, result=RESULT)
    journal._write(lambda: None)  # what checkpoint() does: a write the caller waits for
    assert Step.objects.filter(pk__in=steps, ended_at__isnull=False).count() == 5
    journal.close()


def test_a_failed_queued_write_is_raised_by_the_next_waited_write() -> None:
    writer = _GroupWriter()
    writer.post(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: None)
    assert writer.submit(lambda: 7) == 7  # raised once, then the writer goes on
    writer.close()


def test_a_failed_queued_write_is_raised_by_close_when_nothing_waited_after_it() -> None:
    writer = _GroupWriter()
    writer.post(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.close()


def test_started_rows_inserted_in_bulk_each_name_their_own_caller_s_call() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from updates.models import StepEvent

    journal = _journal()
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            ids = dict(
                pool.map(
                    lambda i: (
                        f"c{i}",
                        journal.call_started(component=f"c{i}", state="Download", argv=[str(i)]),
                    ),
                    range(10),
                )
            )
        # Inserted in bulk (one statement per batch), yet every id is its caller's row, durable.
        for component, step in ids.items():
            row = Step.objects.get(pk=step)
            assert (row.component, row.argv) == (component, [component[1:]])
            assert StepEvent.objects.filter(step_id=step, kind="started").count() == 1
    finally:
        journal.close()


def test_finished_rows_written_in_bulk_each_keep_their_own_outcome_event_and_seal() -> None:
    from updates.models import JournalEntry, StepEvent

    journal = _journal()
    failed = CallResult(
        argv=("noop", "ArtifactInstall"),
        exit_code=3,
        stdout="",
        stderr="disk full\n",
        started_at=0,
        ended_at=0,
        timed_out=False,
    )
    steps = [
        journal.call_started(component=f"c{i}", state="ArtifactInstall", argv=[str(i)]) for i in range(4)
    ]
    journal.call_finished(steps[0], result=RESULT)
    journal.call_finished(steps[1], result=failed)
    journal.call_finished(steps[2], result=RESULT, answer="Yes")
    journal.call_finished(steps[3], result=None, error="reboot command failed")  # no call ran
    journal.close()  # the queued finishes commit (together: nothing waited between them)
    rows = {row.pk: row for row in Step.objects.filter(pk__in=steps)}
    ok, bad, answered, none = (rows[pk] for pk in steps)
    assert (ok.exit_code, ok.stdout, ok.error, ok.timed_out) == (0, "ok\n", "", False)
    assert (bad.exit_code, bad.stderr, bad.error) == (3, "disk full\n", "exit code 3")
    assert answered.answer == "Yes"
    assert (none.exit_code, none.stdout, none.error) == (None, "", "reboot command failed")
    assert all(row.ended_at is not None and row.ended_at >= row.started_at for row in rows.values())
    for pk in steps:
        assert StepEvent.objects.filter(step_id=pk, kind="finished").count() == 1
        entry = JournalEntry.objects.get(kind="step.finished", data__step=pk)
        assert rows[pk].seal == entry.hash and entry.data["exit_code"] == rows[pk].exit_code
