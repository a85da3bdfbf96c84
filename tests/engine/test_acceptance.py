"""Bundle acceptance rules (updates.engine.acceptance), without a database: real artifacts
ingested into a real store, a real manifest and topology, and the questions to the system
answered by a recording stand-in."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from updates.engine.acceptance import Findings, Verdict, accept
from updates.engine.artifact import ArtifactInfo, ArtifactReader, write_artifact
from updates.engine.bundle import Intake, ingest
from updates.engine.manifest import Component, InputError, load_desired_state
from updates.engine.planner import Inspected, SelectionError
from updates.engine.store import ArtifactStore

MANIFEST = b"""api_version: mender/v1
kind: manifest
name: sys-v2
system_types_compatible: [system-core]
component_types:
  gateway:
    artifact_path: artifacts/gateway-v2.mender
    update_strategy: {order: 10}
"""
BY_NAME = MANIFEST.replace(b"artifact_path: artifacts/gateway-v2.mender", b"artifact_name: gateway-v9")
TOPOLOGY = b"""api_version: mender/v1
kind: topology
system_type: system-core
components:
  - {component_type: gateway, interface: gateway, interface_args: [G13]}
"""
GATEWAY_V1 = {"rootfs-image.gateway.version": "gateway-v1"}


class Ask:
    """The system's answers; records which questions were asked."""

    def __init__(self, tmp_path: Path, *, store_paths: Sequence[Path] = (), failures: Sequence[str] = ()):
        self.tmp_path, self.store_paths, self.failures = tmp_path, list(store_paths), list(failures)
        self.device = ("gateway", "/etc/mender/device_type")
        self.provides = dict(GATEWAY_V1)
        self.inspect_problem: str | None = None
        self.asked: list[str] = []

    def device_type(self) -> tuple[str | None, str]:
        self.asked.append("device_type")
        return self.device

    def file_here(self, path: Path) -> bool:
        self.asked.append("file_here")
        return path.exists()

    def in_sources(self, *, artifact_name: str, component_type: str) -> tuple[list[Path], list[str]]:
        self.asked.append(f"in_sources {artifact_name}")
        return self.store_paths, self.failures

    def read_header(self, path: Path) -> tuple[ArtifactInfo, int]:
        self.asked.append("read_header")
        with open(path, "rb") as fileobj:
            return ArtifactReader(fileobj).read_header(), path.stat().st_size

    def inspect(self, components: Sequence[Component]) -> list[Inspected]:
        self.asked.append("inspect")
        if self.inspect_problem:
            raise SelectionError([self.inspect_problem])
        return [
            Inspected(c, c.interface_args[0] if c.interface_args else "x", self.provides) for c in components
        ]


def artifact(tmp_path: Path, name: str = "gateway-v2", **options: object) -> bytes:
    (tmp_path / "p.img").write_bytes(b"fw\n")
    out = tmp_path / f"{name}.mender"
    settings: dict[str, object] = {"device_types": ["gateway"], "payload_type": "gateway"} | options
    write_artifact(out, kind="module-image", name=name, files=[tmp_path / "p.img"], **settings)  # type: ignore[arg-type]
    return out.read_bytes()


def tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def found(
    tmp_path: Path,
    members: dict[str, bytes],
    *,
    system_topology: bytes = TOPOLOGY,
    keys_problem: str | None = None,
    space_problem: str | None = None,
) -> Findings:
    """Ingest `members` as a tar bundle and load its manifest as the service would."""
    intake = ingest(io.BytesIO(tar(members)), ArtifactStore(tmp_path / "store"), name="b.tar")
    directory = tmp_path / "bundles" / "1"
    desired, problems = None, []
    if intake.manifest is not None:
        (tmp_path / "topology").mkdir(exist_ok=True)
        (tmp_path / "topology" / "topology.yaml").write_bytes(system_topology)
        try:
            desired = load_desired_state(
                directory / intake.manifest_member,
                topology_dir=tmp_path / "topology",
                manifest_data=intake.manifest,
            )
        except InputError as exc:
            problems = [str(p) for p in exc.problems]
    return Findings(intake, directory, False, keys_problem, space_problem, desired, problems)


def failed(verdict: Verdict) -> list[str]:
    return [r["check"] for r in verdict.checks.rows if not r["ok"]]


def test_it_accepts_a_bundle_that_carries_a_compatible_artifact(tmp_path: Path) -> None:
    ask = Ask(tmp_path)
    verdict = accept(
        found(tmp_path, {"manifest.yaml": MANIFEST, "artifacts/gateway-v2.mender": artifact(tmp_path)}), ask
    )
    assert verdict.accepted, verdict.checks.problems
    assert verdict.manifest_name == "sys-v2"
    assert verdict.resolved == {"gateway": ["artifacts/gateway-v2.mender"]}
    assert [r["check"] for r in verdict.checks.rows] == [
        "archive and artifacts",
        "signatures",
        "manifest",
        "artifacts present or resolvable",
        "compatibility",
    ]
    assert "inspect" in ask.asked and not any(a.startswith("in_sources") for a in ask.asked)


def test_it_refuses_when_the_verification_keys_cannot_be_read(tmp_path: Path) -> None:
    members = {"manifest.yaml": MANIFEST, "artifacts/gateway-v2.mender": artifact(tmp_path)}
    verdict = accept(found(tmp_path, members, keys_problem="keys.pem: not a PEM key"), Ask(tmp_path))
    assert failed(verdict) == ["verification keys"]
    assert verdict.checks.problems == ["verification keys: keys.pem: not a PEM key"]


def test_it_refuses_an_upload_without_room_and_checks_nothing_else(tmp_path: Path) -> None:
    ask = Ask(tmp_path)
    findings = Findings(Intake(form=""), tmp_path, False, space_problem="needs 5 GB, 1 GB free")
    verdict = accept(findings, ask)
    assert [r["check"] for r in verdict.checks.rows] == ["disk space"] and not verdict.accepted
    assert ask.asked == []


def test_it_refuses_an_archive_with_an_unexpected_member(tmp_path: Path) -> None:
    members = {
        "manifest.yaml": MANIFEST,
        "artifacts/gateway-v2.mender": artifact(tmp_path),
        "notes.txt": b"hi",
    }
    verdict = accept(found(tmp_path, members), Ask(tmp_path))
    assert failed(verdict) == ["archive and artifacts"]
    assert "notes.txt" in verdict.checks.problems[0]


def test_it_names_manifest_problems_by_the_file_in_the_bundle(tmp_path: Path) -> None:
    broken = MANIFEST.replace(b"name: sys-v2\n", b"")
    verdict = accept(found(tmp_path, {"manifest.yaml": broken}), Ask(tmp_path))
    assert failed(verdict) == ["manifest"]
    assert all(str(tmp_path) not in p for p in verdict.checks.problems)
    assert any("manifest.yaml" in p and "name" in p for p in verdict.checks.problems)


def test_it_refuses_a_bundle_topology_made_for_another_system_type(tmp_path: Path) -> None:
    theirs = TOPOLOGY.replace(b"system-core", b"system-other")
    members = {
        "manifest.yaml": MANIFEST,
        "topology.yaml": theirs,
        "artifacts/gateway-v2.mender": artifact(tmp_path),
    }
    verdict = accept(found(tmp_path, members), Ask(tmp_path))
    assert failed(verdict) == ["bundle topology"]
    assert "made for system type 'system-other', this system is 'system-core'" in verdict.checks.problems[0]


def test_it_refuses_a_manifest_artifact_for_neither_the_system_nor_this_device(tmp_path: Path) -> None:
    members = {"manifest.yaml": MANIFEST, "artifacts/gateway-v2.mender": artifact(tmp_path)}
    findings = found(tmp_path, members)
    other = found(
        tmp_path / "other", {"x.mender": artifact(tmp_path, "manifest-v2", device_types=["router"])}
    )
    findings.intake.manifest_artifact = other.intake.artifacts[0]
    verdict = accept(findings, Ask(tmp_path))
    assert failed(verdict) == ["manifest artifact"]
    assert (
        "neither the system type 'system-core' nor this device's type 'gateway'" in verdict.checks.problems[0]
    )


def test_it_refuses_an_artifact_neither_carried_nor_in_the_store(tmp_path: Path) -> None:
    ask = Ask(tmp_path, failures=["https://server: unreachable"])
    verdict = accept(found(tmp_path, {"manifest.yaml": BY_NAME}), ask)
    assert failed(verdict) == ["artifacts present or resolvable"]
    assert (
        "'gateway-v9' is neither in the bundle nor in the store; https://server: unreachable"
        in (verdict.checks.problems[0])
    )
    assert "inspect" not in ask.asked  # a bundle already refused: the components are not asked


def test_it_resolves_an_artifact_by_name_from_the_store(tmp_path: Path) -> None:
    stored = tmp_path / "store-file"
    stored.write_bytes(artifact(tmp_path, "gateway-v9"))
    verdict = accept(found(tmp_path, {"manifest.yaml": BY_NAME}), Ask(tmp_path, store_paths=[stored]))
    assert verdict.accepted, verdict.checks.problems
    assert verdict.resolved == {"gateway": ["store store-file"]}


def test_it_refuses_an_artifact_path_to_a_file_outside_the_bundle(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.mender"
    outside.write_bytes(artifact(tmp_path))
    manifest = MANIFEST.replace(b"artifacts/gateway-v2.mender", str(outside).encode())
    verdict = accept(found(tmp_path, {"manifest.yaml": manifest}), Ask(tmp_path))
    assert failed(verdict) == ["artifacts present or resolvable"]
    assert "is a file on this appliance, outside the bundle" in verdict.checks.problems[0]


def test_it_refuses_an_artifact_the_component_cannot_take(tmp_path: Path) -> None:
    carried = artifact(tmp_path, depends={"rootfs-image.gateway.version": "gateway-v0"})
    members = {"manifest.yaml": MANIFEST, "artifacts/gateway-v2.mender": carried}
    verdict = accept(found(tmp_path, members), Ask(tmp_path))
    assert failed(verdict) == ["compatibility"]
    assert verdict.checks.problems[0].startswith("compatibility: gateway.G13: artifacts/gateway-v2.mender:")


def test_it_refuses_when_the_components_cannot_be_asked(tmp_path: Path) -> None:
    ask = Ask(tmp_path)
    ask.inspect_problem = "gateway: Identity failed"
    members = {"manifest.yaml": MANIFEST, "artifacts/gateway-v2.mender": artifact(tmp_path)}
    verdict = accept(found(tmp_path, members), ask)
    assert verdict.checks.problems == [
        "compatibility: cannot ask the components what they run: gateway: Identity failed"
    ]


def test_it_reports_every_problem_at_once(tmp_path: Path) -> None:
    theirs = TOPOLOGY.replace(b"system-core", b"system-other")
    members = {"manifest.yaml": BY_NAME, "topology.yaml": theirs, "notes.txt": b"hi"}
    verdict = accept(found(tmp_path, members, keys_problem="keys.pem: unreadable"), Ask(tmp_path))
    assert failed(verdict) == [
        "verification keys",
        "archive and artifacts",
        "bundle topology",
        "artifacts present or resolvable",
    ]
    assert len(verdict.checks.problems) == 4 and not verdict.accepted


@pytest.mark.parametrize("system_type", [None, "system-core"])
def test_a_manifest_artifact_for_the_system_type_fits(tmp_path: Path, system_type: str | None) -> None:
    from updates.engine.acceptance import manifest_artifact_fit

    problem, _ = manifest_artifact_fit(
        "m", ["system-core"], system_type=system_type, device_type=(None, "no device_type file")
    )
    assert problem is None
