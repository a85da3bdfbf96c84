"""`Progress.outcome`: a component's outcome words from the engine's own run position (no database)."""

from __future__ import annotations

import pytest

from updates.engine.machine import ComponentOutcome, Progress, RunPhase, RunState


@pytest.mark.parametrize(
    ("progress", "run", "failed_in", "expected"),
    [
        (Progress(), "in_progress", None, ComponentOutcome("not started yet", "v1")),
        (
            Progress(downloaded=True),
            "in_progress",
            None,
            ComponentOutcome("downloaded, not installed yet", "v1"),
        ),
        (Progress(), "ended", None, ComponentOutcome("not installed", "v1")),
        (Progress(), "ended", "Download", ComponentOutcome("failed in Download, not installed", "v1")),
        (
            Progress(install_started=True),
            "in_progress",
            None,
            ComponentOutcome("installed, not committed", "v2", uncommitted=True),
        ),
        (
            Progress(install_started=True, committed=True),
            "in_progress",
            None,
            ComponentOutcome("committed", "v2"),
        ),
        (Progress(install_started=True, committed=True), "ended", None, ComponentOutcome("installed", "v2")),
        (Progress(install_started=True), "succeeded", None, ComponentOutcome("installed", "v2")),
        (
            Progress(install_started=True, rollback_ran=True, rollback_ok=True),
            "ended",
            "ArtifactCommit",
            ComponentOutcome("failed in ArtifactCommit, rolled back", "v1"),
        ),
        (
            Progress(install_started=True, rollback_ran=True),
            "ended",
            None,
            ComponentOutcome("rollback FAILED", "unknown"),
        ),
        (
            Progress(install_started=True),
            "ended",
            "ArtifactInstall",
            ComponentOutcome("failed in ArtifactInstall, NOT rolled back", "unknown"),
        ),
    ],
)
def test_it_names_what_happened_and_the_version_it_runs(
    progress: Progress, run: RunPhase, failed_in: str | None, expected: ComponentOutcome
) -> None:
    assert progress.outcome(current="v1", target="v2", run=run, failed_in=failed_in) == expected


def test_it_reads_the_persisted_position_and_ignores_keys_it_does_not_know() -> None:
    state = RunState(progress={"rtos.R1": Progress(install_started=True, committed=True)})
    persisted = state.to_json()["progress"]["rtos.R1"] | {"written_by_a_later_version": True}
    assert Progress.from_json(persisted) == Progress(install_started=True, committed=True)
    assert Progress.from_json(None) == Progress()


def test_it_counts_the_milestones_reached_in_the_order_they_happen() -> None:
    assert Progress().milestones_reached() == 0
    assert Progress(entered=True, downloaded=True, install_started=True).milestones_reached() == 3
    assert (
        Progress(
            entered=True, downloaded=True, install_started=True, committed=True, cleaned=True
        ).milestones_reached()
        == 5
    )
