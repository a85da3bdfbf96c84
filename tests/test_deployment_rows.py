"""The deployment row's own guarantees, in the database: the in-progress slot, closing, options."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from updates import selectors
from updates.actors import SYSTEM
from updates.engine.errors import BusyError
from updates.models import Deployment, DeploymentCount, DeploymentStatus, Manifest, Step
from updates.services import deployment_cancel, deployment_close
from updates.services.deployments import _busy

pytestmark = pytest.mark.django_db


def _deployment(**fields: object) -> Deployment:
    manifest = Manifest.objects.create(
        name="sys-v2", form="current", sha256="0" * 64, raw="", source_path="m"
    )
    return Deployment.objects.create(manifest=manifest, **{"actor": SYSTEM.as_json(), **fields})


def test_it_refuses_a_finished_deployment_that_keeps_the_slot() -> None:
    deployment = _deployment()
    deployment.status = Deployment.Status.SUCCEEDED
    with pytest.raises(IntegrityError), transaction.atomic():
        deployment.save()


def test_it_refuses_a_deployment_in_progress_without_the_slot() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        _deployment(status=Deployment.Status.STOPPED, slot=None)


def test_it_refuses_a_second_deployment_in_progress() -> None:
    _deployment()
    with pytest.raises(IntegrityError), transaction.atomic():
        _deployment()


@pytest.mark.parametrize("status", Deployment.TERMINAL)
def test_close_gives_up_slot_and_owner_and_frees_the_next_deployment(status: DeploymentStatus) -> None:
    deployment = _deployment(status=Deployment.Status.RUNNING, owner="boot:1:2")
    deployment_close(deployment, status=status, reason="why", components=["rtos.R1"], actor=SYSTEM)
    deployment.refresh_from_db()
    assert (deployment.status, deployment.reason, deployment.components) == (status, "why", ["rtos.R1"])
    assert deployment.slot is None and deployment.owner == "" and deployment.finished_at is not None
    assert _deployment().slot == 1


def test_close_refuses_a_status_in_progress() -> None:
    deployment = _deployment()
    with pytest.raises(ValueError, match="not a final status"):
        deployment_close(deployment, status=Deployment.Status.STOPPED, reason="", actor=SYSTEM)
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.QUEUED and deployment.slot == 1


def test_every_engine_outcome_has_a_status() -> None:
    from typing import get_args

    from updates.engine.machine import Outcome

    assert set(Deployment.OUTCOME_STATUS) == set(get_args(Outcome))
    assert set(Deployment.IN_PROGRESS) | set(Deployment.TERMINAL) == set(Deployment.Status)
    assert not set(Deployment.IN_PROGRESS) & set(Deployment.TERMINAL)


def test_the_run_options_are_columns() -> None:
    deployment = _deployment(stop_before=["ArtifactCommit"], exit_on_reboot=True)
    deployment.refresh_from_db()
    assert (deployment.stop_before, deployment.exit_on_reboot) == (["ArtifactCommit"], True)


def test_busy_says_a_live_runner_is_running_and_to_wait() -> None:
    from updates.liveness import owner_token

    _deployment(status=Deployment.Status.RUNNING, owner=owner_token())
    error = _busy()
    assert isinstance(error, BusyError) and error.code == "busy" and error.exit_code == 3
    assert "is running (pid " in str(error) and "wait for it to end" in str(error)
    assert "resume" not in str(error)


def test_busy_advises_resume_or_rollback_only_when_the_runner_is_gone() -> None:
    _deployment(status=Deployment.Status.RUNNING, owner="other-boot:1:2")
    assert "left running by a process that is gone: run `resume` or `rollback`" in str(_busy())


def _with_steps(deployment: Deployment) -> None:
    now = timezone.now()
    for component, state, code, error in (
        ("rtos.R1", "Provides", 1, ""),  # a query that failed: never an update state
        ("rtos.R1", "ArtifactInstall", 2, ""),
        ("rtos.R1", "ArtifactRollback", 3, ""),  # later: the first one counts
        ("gateway.G13", "ArtifactInstall", 0, ""),
        ("gateway.G13", "ArtifactCommit", None, "timed out"),
    ):
        Step.objects.create(
            deployment=deployment,
            component=component,
            state=state,
            started_at=now,
            ended_at=now,
            exit_code=code,
            error=error,
        )


def test_close_stores_the_failed_states_and_a_finished_deployment_is_read_without_its_steps() -> None:
    deployment = _deployment(status=Deployment.Status.RUNNING)
    _with_steps(deployment)
    deployment_close(deployment, status=Deployment.Status.ROLLED_BACK, reason="", actor=SYSTEM)
    deployment.refresh_from_db()
    expected = {"rtos.R1": "ArtifactInstall", "gateway.G13": "ArtifactCommit"}
    assert deployment.failed_in == expected == selectors.failed_states_from_steps(deployment)
    with CaptureQueriesContext(connection) as captured:
        selectors.deployment_components(deployment)
    assert not [q["sql"] for q in captured if "updates_step" in q["sql"]]


def test_the_migration_fills_in_what_finished_deployments_had_failed_in() -> None:
    backfill = importlib.import_module("updates.migrations.0014_deployment_failed_in").backfill
    finished = _deployment(status=Deployment.Status.ROLLED_BACK, slot=None)
    _with_steps(finished)
    clean = _deployment(status=Deployment.Status.SUCCEEDED, slot=None)
    running = _deployment(status=Deployment.Status.RUNNING)
    _with_steps(running)
    backfill(apps, None)
    finished.refresh_from_db()
    clean.refresh_from_db()
    running.refresh_from_db()
    assert finished.failed_in == {"rtos.R1": "ArtifactInstall", "gateway.G13": "ArtifactCommit"}
    assert (clean.failed_in, running.failed_in) == ({}, None)  # in progress: read from its steps


# ----- the stored counts per status (the history's `total`) --------------------------------------


def _counted() -> dict[str, int]:
    """What a COUNT says, per status."""
    rows = Deployment.objects.order_by().values_list("status").annotate(n=Count("id"))
    return dict(rows)


def _assert_counts_match() -> None:
    assert selectors.deployment_counts() == _counted()


def test_the_counts_follow_a_deployment_through_every_change_of_status() -> None:
    queued = _deployment()
    _assert_counts_match()
    cancelled = deployment_cancel(deployment_id=queued.pk, actor=SYSTEM)  # queued -> rejected
    assert cancelled.status == Deployment.Status.REJECTED
    _assert_counts_match()
    for end in (Deployment.Status.ROLLED_BACK, Deployment.Status.INCONSISTENT, Deployment.Status.SUCCEEDED):
        run = _deployment()
        # The runner's claim and a gate's wait: conditional UPDATEs, no save().
        assert Deployment.objects.filter(pk=run.pk, status="queued").update(status="running") == 1
        _assert_counts_match()
        Deployment.objects.filter(pk=run.pk).update(status=Deployment.Status.WAITING_APPROVAL)
        run.refresh_from_db()
        _assert_counts_match()
        deployment_close(run, status=end, reason="", actor=SYSTEM)  # failure, rollback, success
        _assert_counts_match()
    assert selectors.deployment_counts() == {
        "rejected": 1,
        "rolled_back": 1,
        "inconsistent": 1,
        "succeeded": 1,
    }
    # A save() that leaves the status as it is changes no count; a rolled-back transaction none.
    run.reason = "edited"
    run.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        _deployment(status=Deployment.Status.SUCCEEDED, slot=None)
        _deployment(status=Deployment.Status.STOPPED, slot=None)  # refused: all of it undone
    _assert_counts_match()
    # Bulk writes and deletes too: the database keeps them, whatever writes the rows.
    manifest = Manifest.objects.first()
    Deployment.objects.bulk_create(
        Deployment(manifest=manifest, status="succeeded", slot=None, actor=SYSTEM.as_json()) for _ in range(5)
    )
    _assert_counts_match()
    Deployment.objects.filter(status="succeeded").exclude(pk=run.pk).delete()
    _assert_counts_match()
    page, total = selectors.deployment_page(
        filters=selectors.DeploymentFilter(status="succeeded"), page=1, page_size=10
    )
    assert total == 1 and [d["id"] for d in page] == [run.pk]


def test_the_migration_counts_the_deployments_already_there() -> None:
    migration = importlib.import_module("updates.migrations.0016_deployment_counts")
    _deployment(status=Deployment.Status.ROLLED_BACK, slot=None)
    _deployment(status=Deployment.Status.SUCCEEDED, slot=None)
    _deployment()
    DeploymentCount.objects.all().delete()  # as before the migration
    migration.create_triggers(connection)
    assert selectors.deployment_counts() == _counted() == {"rolled_back": 1, "succeeded": 1, "queued": 1}
    _deployment(status=Deployment.Status.SUCCEEDED, slot=None)  # the triggers are (still) there
    _assert_counts_match()
