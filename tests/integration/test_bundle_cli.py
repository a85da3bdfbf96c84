"""Bundles end to end through the real CLI: add, list, show, install by id or file, rejection,
the artifact server as a source, and gc."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.engine.test_server import (
    TOKEN,
    Running,
    server,  # noqa: F401 - the loopback HTTPS server fixture
)
from tests.integration.conftest import DemoSystem

V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}


def _bundle(demo: DemoSystem, name: str, manifest: str, *artifacts: str, gz: bool = True) -> Path:
    out = demo.root / name
    with tarfile.open(out, "w:gz" if gz else "w") as tar:
        tar.add(demo.system / manifest, manifest)
        for artifact in artifacts:
            tar.add(demo.system / "artifacts" / artifact, f"artifacts/{artifact}")
    return out


def _store(demo: DemoSystem) -> list[str]:
    root = demo.datastore / "artifacts"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


@pytest.fixture
def v2_bundle(demo: DemoSystem) -> Path:
    return _bundle(demo, "v2.tar.gz", "manifest-v2.yaml", "gateway-v2.mender", "rtos-v2.mender")


def test_it_adds_a_bundle_and_installs_it_by_id(demo: DemoSystem, v2_bundle: Path) -> None:
    added = demo.run("bundle", "add", str(v2_bundle))
    assert added.returncode == 0, added.stdout + added.stderr
    assert added.stdout.startswith("bundle 1: accepted (tar.gz")
    assert "[ok] compatibility: gateway.G13: gateway-v2" in added.stdout
    v2_bundle.unlink()  # the deployment must not need the uploaded file
    result = demo.run("install", "1")
    assert result.returncode == 0, result.stderr
    assert demo.versions() == V2


def test_it_installs_from_read_only_links_into_the_store(demo: DemoSystem, v2_bundle: Path) -> None:
    assert demo.run("install", str(v2_bundle)).returncode == 0
    history = json.loads(demo.run("history", "--json").stdout)
    download = next(s for s in history[0]["steps"] if s["state"] == "Download")
    assert download["argv"]
    links = list((demo.datastore / "bundles" / "1" / "artifacts").iterdir())
    stored = {
        (p.stat().st_ino) for p in (demo.datastore / "artifacts").iterdir() if not p.name.startswith(".")
    }
    assert links and all(p.stat().st_ino in stored and not p.stat().st_mode & 0o222 for p in links)


def test_it_lists_and_shows_bundles(demo: DemoSystem, v2_bundle: Path) -> None:
    demo.run("bundle", "add", str(v2_bundle))
    assert "accepted" in demo.run("bundle", "list").stdout
    shown = json.loads(demo.run("bundle", "show", "1", "--json").stdout)
    assert shown["manifest"] == "system-core-v2" and len(shown["artifacts"]) == 2
    assert {c["check"] for c in shown["checks"]} >= {"manifest", "compatibility", "signatures"}


def test_it_keeps_a_rejected_bundle_only_as_a_record_with_every_reason(demo: DemoSystem) -> None:
    text = (demo.system / "manifest-v2.yaml").read_text().replace('["system-core"]', '["other-system"]')
    (demo.system / "bad.yaml").write_text(text)
    bundle = _bundle(demo, "bad.tar", "bad.yaml", "gateway-v2.mender", gz=False)
    added = demo.run("bundle", "add", str(bundle))
    assert added.returncode == 2 and "rejected" in added.stdout
    assert "does not contain this system's type 'system-core'" in added.stdout
    assert _store(demo) == [] and not (demo.datastore / "bundles" / "1").exists()
    refused = demo.run("install", "1")
    assert refused.returncode == 2 and "bundle 1 was rejected, it cannot be deployed: " in refused.stderr


def test_it_rejects_an_artifact_built_for_another_component_type(demo: DemoSystem) -> None:
    text = (
        (demo.system / "manifest-v2.yaml")
        .read_text()
        .replace("artifacts/rtos-v2.mender", "artifacts/gateway-v2.mender")
    )
    (demo.system / "swap.yaml").write_text(text)
    added = demo.run("bundle", "add", str(_bundle(demo, "swap.tar", "swap.yaml", "gateway-v2.mender")))
    assert added.returncode == 2
    assert "rtos.R998: artifacts/gateway-v2.mender: artifact is for device types ['gateway']" in added.stdout


def test_it_resolves_artifact_names_from_the_artifact_server(demo: DemoSystem, server: Running) -> None:  # noqa: F811
    for name in ("gateway-v3", "rtos-v3"):
        server.state.add(name, demo.system / "artifacts" / f"{name}.mender")
    (demo.root / "token").write_text(TOKEN)
    conf = {
        "ArtifactServer": {"URL": server.url, "TokenFile": str(demo.root / "token")},
        "ServerCertificate": str(server.ca),
    }
    (demo.root / "conf" / "mender-orchestrator.conf").write_text(json.dumps(conf))
    lone = demo.root / "by-name.yaml"
    lone.write_text(
        (demo.system / "manifest-v3.yaml")
        .read_text()
        .replace("artifact_path: artifacts/", "# artifact_path: artifacts/")
    )
    added = demo.run("bundle", "add", str(lone))
    assert added.returncode == 0, added.stdout + added.stderr
    assert len(_store(demo)) == 2
    assert demo.run("install", "1").returncode == 0


def test_it_lists_then_evicts_what_no_manifest_needs_beyond_the_budget(
    demo: DemoSystem, v2_bundle: Path
) -> None:
    assert demo.run("install", str(v2_bundle)).returncode == 0
    extra = _bundle(demo, "v3.tar.gz", "manifest-v3.yaml", "gateway-v3.mender", "rtos-v3.mender")
    assert demo.run("bundle", "add", str(extra)).returncode == 0
    (demo.root / "conf" / "mender-orchestrator.conf").write_text('{"ArtifactsCache": {"MaxSizeBytes": 1}}')
    before = _store(demo)
    dry = demo.run("gc", "--dry-run")
    assert "would remove 2 file(s)" in dry.stdout and _store(demo) == before
    assert "removed 2 file(s)" in demo.run("gc").stdout
    assert len(_store(demo)) == 2  # what the active manifest (v2) needs stays
    assert demo.run("install", "1").returncode == 0


def _manifest_artifact(demo: DemoSystem, device_type: str) -> Path:
    """As `mender-orchestrator-manifest-gen -t gateway …` builds it: for the system device's type."""
    from updates.engine.artifact import write_artifact

    out = demo.root / f"manifest-{device_type}.mender"
    write_artifact(
        out,
        kind="module-image",
        name="system-core-v2",
        device_types=[device_type],
        files=[demo.system / "manifest-v2.yaml"],
        payload_type="mender-orchestrator-manifest",
        software_filesystem="data-partition",
    )
    return out


def _device_type(demo: DemoSystem, device_type: str) -> Path:
    path = demo.root / "mender" / "device_type"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"device_type={device_type}\n")
    (demo.root / "conf" / "mender-orchestrator.conf").write_text(json.dumps({"DeviceTypeFile": str(path)}))
    return path


def test_it_takes_a_manifest_artifact_for_the_hosts_device_type(demo: DemoSystem, v2_bundle: Path) -> None:
    assert demo.run("bundle", "add", str(v2_bundle)).returncode == 0  # the artifacts, into the store
    path = _device_type(demo, "gateway")
    added = demo.run("install", str(_manifest_artifact(demo, "gateway")))
    assert added.returncode == 0, added.stdout + added.stderr
    assert (
        "[ok] manifest artifact: system-core-v2: its compatible types ['gateway'] contain this device's type "
        f"'gateway' ({path})" in added.stdout
    )
    assert demo.versions() == V2


def test_it_takes_a_manifest_artifact_for_the_system_type(demo: DemoSystem, v2_bundle: Path) -> None:
    assert demo.run("bundle", "add", str(v2_bundle)).returncode == 0
    added = demo.run("bundle", "add", str(_manifest_artifact(demo, "system-core")))
    assert added.returncode == 0, added.stdout + added.stderr
    assert "contain the system type 'system-core'" in added.stdout


def test_it_refuses_a_manifest_artifact_for_another_device_naming_both_types(demo: DemoSystem) -> None:
    path = _device_type(demo, "gateway")
    added = demo.run("bundle", "add", str(_manifest_artifact(demo, "camera")))
    assert added.returncode == 2
    assert (
        "manifest artifact 'system-core-v2' is for ['camera']: that is neither the system type "
        f"'system-core' nor this device's type 'gateway' ({path})" in added.stdout
    )
