"""Where `artifact_name` comes from during selection: a source that fails says so, and its
reason (not "not found") becomes the component's problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from updates.engine.artifact import write_artifact
from updates.engine.manifest import Component, DesiredState, Topology, parse_manifest
from updates.engine.planner import Inspected, SelectionError, SourceError, select

MANIFEST = b"""api_version: mender/v1
kind: manifest
name: sys-v2
system_types_compatible: [sys]
component_types:
  rtos:
    artifact_name: rtos-v2
    update_strategy: {order: 10}
"""


class DownSource:
    """A source that cannot answer, as an unreachable artifact server."""

    def candidates(self, *, artifact_name: str, component_type: str) -> list[Path]:
        raise SourceError("artifact server https://updates.example: HTTP 500 Internal Server Error")


class DirectorySource:
    """Artifacts in a directory, by file name: `<artifact_name>.mender`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def candidates(self, *, artifact_name: str, component_type: str) -> list[Path]:
        path = self.root / f"{artifact_name}.mender"
        return [path] if path.is_file() else []


def _state(tmp_path: Path) -> tuple[DesiredState, list[Inspected]]:
    manifest, _ = parse_manifest(MANIFEST, path=tmp_path / "manifest.yaml")
    component = Component("rtos", "rtos", (), None)
    topology = Topology("sys", (component,), "test")
    return DesiredState(manifest, topology), [Inspected(component, "R1", {"rootfs-image.rtos.version": "v1"})]


def test_it_names_the_failing_source_as_the_components_problem(tmp_path: Path) -> None:
    desired, inspected = _state(tmp_path)
    with pytest.raises(SelectionError) as caught:
        select(desired, inspected, sources=[DirectorySource(tmp_path), DownSource()])
    assert caught.value.problems == [
        "rtos.R1: artifact 'rtos-v2' is not in the artifact store; "
        "artifact server https://updates.example: HTTP 500 Internal Server Error"
    ]


def test_it_takes_the_artifact_from_a_later_source_when_an_earlier_one_fails(tmp_path: Path) -> None:
    (tmp_path / "fw.img").write_text("v2\n")
    write_artifact(
        tmp_path / "rtos-v2.mender",
        kind="module-image",
        name="rtos-v2",
        device_types=["rtos"],
        payload_type="rtos",
        files=[tmp_path / "fw.img"],
    )
    desired, inspected = _state(tmp_path)
    plan = select(desired, inspected, sources=[DownSource(), DirectorySource(tmp_path)])
    assert [(t.action, t.target_version) for t in plan.targets] == [("install", "rtos-v2")]
