"""`choose_artifact`, the one docs/protocol.md §3.1 choice among candidates (planner and bundle checks), and the
stored plan's one serialisation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from updates.engine.artifact import ArtifactError, ArtifactInfo, write_artifact
from updates.engine.errors import (
    BusyError,
    CleanupStarted,
    ExitCode,
    InvalidInput,
    NotFound,
    NothingInProgress,
    OrchestratorError,
    outcome_exit_code,
)
from updates.engine.manifest import Component, DesiredState, Topology, parse_manifest
from updates.engine.planner import Candidate, Inspected, Plan, choose_artifact, select

RTOS = Component("rtos", "rtos", ("--port", "1"), None)


def _artifact(tmp_path: Path, name: str, device_type: str = "rtos", padding: int = 0) -> Candidate:
    payload = tmp_path / f"{name}-{padding}.img"
    payload.write_bytes(os.urandom(padding) or b"fw\n")  # random: gzip must not shrink it
    path = tmp_path / f"{name}-{device_type}-{padding}.mender"
    info = write_artifact(
        path, kind="module-image", name=name, device_types=[device_type], payload_type="rtos", files=[payload]
    )
    return Candidate(label=path.name, info=info, size=path.stat().st_size, path=path)


def _rtos(version: str) -> Inspected:
    return Inspected(RTOS, "R1", {"rootfs-image.rtos.version": version})


def test_it_takes_the_smallest_usable_candidate(tmp_path: Path) -> None:
    big, small = _artifact(tmp_path, "rtos-v2", padding=50_000), _artifact(tmp_path, "rtos-v2")
    choice = choose_artifact(_rtos("rtos-v1"), [big, small])
    assert (choice.candidate, choice.installed, choice.problems) == (small, False, ())


def test_it_prefers_the_installed_candidate_and_skips(tmp_path: Path) -> None:
    other, installed = _artifact(tmp_path, "rtos-v3"), _artifact(tmp_path, "rtos-v2", padding=50_000)
    choice = choose_artifact(_rtos("rtos-v2"), [other, installed])
    assert (choice.candidate, choice.installed) == (installed, True)


def test_it_drops_the_incompatible_and_names_every_reason(tmp_path: Path) -> None:
    wrong, right = _artifact(tmp_path, "rtos-v2", "gateway"), _artifact(tmp_path, "rtos-v2")
    assert choose_artifact(_rtos("rtos-v1"), [wrong, right]).candidate == right
    refused = choose_artifact(_rtos("rtos-v1"), [wrong])
    assert refused.candidate is None
    assert refused.problems == (
        f"rtos.R1: {wrong.label}: artifact is for device types ['gateway'], not component type 'rtos'",
    )


MANIFEST = b"""api_version: mender/v1
kind: manifest
name: sys-v2
system_types_compatible: [sys]
component_types:
  rtos:
    artifact_path: rtos.mender
    update_strategy: {order: 10}
"""


def _plan(tmp_path: Path) -> Plan:
    (tmp_path / "fw.img").write_text("v2\n")
    write_artifact(
        tmp_path / "rtos.mender",
        kind="module-image",
        name="rtos-v2",
        device_types=["rtos"],
        payload_type="rtos",
        files=[tmp_path / "fw.img"],
    )
    manifest, _ = parse_manifest(MANIFEST, path=tmp_path / "manifest.yaml")
    desired = DesiredState(manifest, Topology("sys", (RTOS,), "test"))
    return select(desired, [_rtos("rtos-v1")])


def test_a_stored_plan_reads_back_as_the_same_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    stored = json.loads(json.dumps(plan.to_json()))  # as a JSONField gives it back
    assert stored["groups"] == [[10, ["rtos.R1"]]]
    assert stored["components"][0]["current"] == "rtos-v1" and stored["components"][0]["target"] == "rtos-v2"
    again = Plan.from_json(stored, keys=())
    assert again == plan
    assert isinstance(again.targets[0].artifact, ArtifactInfo)


def test_reading_a_stored_plan_verifies_its_artifacts_again(tmp_path: Path) -> None:
    stored = json.loads(json.dumps(_plan(tmp_path).to_json()))
    (tmp_path / "rtos.mender").write_bytes(b"not an artifact any more")
    with pytest.raises(ArtifactError):
        Plan.from_json(stored, keys=())


def test_every_domain_error_has_its_code_and_the_design_exit_code() -> None:
    table = {
        InvalidInput: ("invalid_input", 2),
        NotFound: ("not_found", 2),
        NothingInProgress: ("nothing_in_progress", 2),
        CleanupStarted: ("cleanup_started", 2),
        BusyError: ("busy", 3),
    }
    for cls, (code, exit_code) in table.items():
        assert issubclass(cls, OrchestratorError) and (cls.code, cls.exit_code) == (code, exit_code)
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("outcome", "failed", "rolling_back", "code"),
    [
        ("succeeded", False, False, 0),
        ("stopped", False, False, 0),
        ("stopped", True, False, 1),  # a stop inside a failed deployment: the module must roll back
        ("stopped", True, True, 0),  # ...which is `rollback --stop-before Cleanup`'s success
        ("reboot_required", False, False, 4),
        ("rolled_back", True, False, 1),
        ("inconsistent", True, False, 1),
        ("rejected", False, False, 1),
    ],
)
def test_it_maps_every_outcome_to_its_exit_code(
    outcome: str, failed: bool, rolling_back: bool, code: int
) -> None:
    assert outcome_exit_code(outcome, failed=failed, rolling_back=rolling_back) == code
