"""Upkeep of the bundle store through the real CLI: ingests killed mid-way, an unreadable
ArtifactServer token file, a failing artifact server during install/plan, and the store's
retention after each deployment."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.engine.test_server import (
    Running,
    server,  # noqa: F401 - the loopback HTTPS server fixture
)
from tests.integration.conftest import CLI, DemoSystem
from tests.integration.test_bundle_cli import V2, _bundle, _store
from updates.engine.artifact import write_artifact
from updates.liveness import owner_token

BIG = 64 << 20  # per artifact: the kill lands mid-ingest (~0.2 s per artifact), yet it stays fast


@pytest.fixture(scope="module")
def big_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .tar with two large artifacts (sparse zero payloads, not compressed): the first is
    named in the store while the second is still being written."""
    root = tmp_path_factory.mktemp("big")
    out = root / "big.tar"
    with tarfile.open(out, "w") as tar:
        for name, dtype in (("gateway-big", "gateway"), ("rtos-big", "rtos")):
            payload, artifact = root / f"{name}.img", root / f"{name}.mender"
            with open(payload, "wb") as fileobj:
                fileobj.truncate(BIG)
            write_artifact(
                artifact,
                kind="module-image",
                name=name,
                device_types=[dtype],
                payload_type=dtype,
                files=[payload],
                compression="none",
            )
            tar.add(artifact, f"artifacts/{name}.mender")
            payload.unlink()
            artifact.unlink()
    return out


def _kill_mid_ingest(demo: DemoSystem, bundle: Path) -> None:
    """SIGKILL `bundle add` once one artifact is named in the store and the next is half written."""
    store = demo.datastore / "artifacts"
    proc = subprocess.Popen([CLI, "bundle", "add", str(bundle)], env=demo.env)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            named = _store(demo) if store.exists() else []
            parts = list((store / ".tmp").glob("*.part")) if named else []
            if parts and any(_size(p) > 0 for p in parts):
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _bundles(demo: DemoSystem) -> dict[int, dict[str, object]]:
    return {b["id"]: b for b in json.loads(demo.run("bundle", "list", "--json").stdout)}


@pytest.mark.parametrize("next_command", ["bundle add", "gc"])
def test_it_rejects_an_ingest_killed_mid_way_and_removes_its_files(
    demo: DemoSystem, big_bundle: Path, next_command: str
) -> None:
    _kill_mid_ingest(demo, big_bundle)
    assert _bundles(demo)[1]["status"] == "ingesting"
    assert _store(demo), "one artifact was named before the kill"
    assert list((demo.datastore / "artifacts" / ".tmp").iterdir()), "the next was half written"
    if next_command == "gc":
        result = demo.run("gc")
        assert "temp file of an interrupted write" in result.stdout
        assert "not recorded (interrupted ingest)" in result.stdout
        left: list[str] = []
    else:
        v2 = _bundle(demo, "v2.tar.gz", "manifest-v2.yaml", "gateway-v2.mender", "rtos-v2.mender")
        result = demo.run("bundle", "add", str(v2))
        left = sorted(p.name for p in (demo.datastore / "bundles" / "2" / "artifacts").iterdir())
    assert result.returncode == 0, result.stdout + result.stderr
    killed = json.loads(demo.run("bundle", "show", "1", "--json").stdout)
    assert killed["status"] == "rejected"
    assert killed["problems"] == ["ingest: interrupted during ingest (its process is gone)"]
    assert list((demo.datastore / "artifacts" / ".tmp").iterdir()) == []
    assert len(_store(demo)) == len(left)  # only what the new bundle carries
    assert not (demo.datastore / "bundles" / ".ingesting" / "1").exists()


def test_it_leaves_an_ingest_whose_process_lives_alone(demo: DemoSystem, big_bundle: Path) -> None:
    _kill_mid_ingest(demo, big_bundle)
    # The marker now names a live process (this one): to gc, the ingest is still running.
    (demo.datastore / "bundles" / ".ingesting" / "1").write_text(owner_token())
    named = _store(demo)
    gc = demo.run("gc")
    assert gc.returncode == 0 and "not recorded" not in gc.stdout
    assert "temp file of an interrupted write" in gc.stdout  # no live writer holds it any more
    assert _bundles(demo)[1]["status"] == "ingesting" and _store(demo) == named


def test_it_reports_an_unreadable_token_file_as_a_config_error(demo: DemoSystem) -> None:
    token = demo.root / "token-dir"
    token.mkdir()  # unreadable as a file, even for root
    conf = {"ArtifactServer": {"URL": "https://updates.example.com", "TokenFile": str(token)}}
    (demo.root / "conf" / "mender-orchestrator.conf").write_text(json.dumps(conf))
    added = demo.run("bundle", "add", str(demo.system / "manifest-v2.yaml"))
    assert added.returncode == 2
    assert added.stderr.splitlines() == [
        f"mender-orchestrator: {demo.root / 'conf' / 'mender-orchestrator.conf'}:1: "
        f"ArtifactServer.TokenFile: cannot read {token}: Is a directory"
    ]
    gc = demo.run("gc")
    assert gc.returncode == 2 and "Traceback" not in gc.stderr and str(token) in gc.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _by_name(demo: DemoSystem, url: str, ca: Path | None = None) -> Path:
    """A manifest that names its artifacts only, and a config whose server is `url` (no retries)."""
    conf: dict[str, object] = {"ArtifactServer": {"URL": url, "Token": "device-jwt", "Retries": 0}}
    if ca is not None:
        conf["ServerCertificate"] = str(ca)
    (demo.root / "conf" / "mender-orchestrator.conf").write_text(json.dumps(conf))
    lone = demo.root / "by-name.yaml"
    text = (demo.system / "manifest-v3.yaml").read_text()
    lone.write_text(text.replace("artifact_path: artifacts/", "# artifact_path: artifacts/"))
    return lone


@pytest.mark.parametrize("command", ["install", "plan"])
def test_it_names_the_server_error_when_artifacts_cannot_be_fetched(
    demo: DemoSystem,
    server: Running,  # noqa: F811
    command: str,
) -> None:
    server.state.fail_500 = 100
    result = demo.run(command, str(_by_name(demo, server.url, server.ca)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"gateway.G13: artifact 'gateway-v3' is not in the artifact store; artifact server {server.url}: "
        "HTTP 500 Internal Server Error (/api/devices/v1/deployments/artifacts)"
    ) in result.stderr
    assert "no artifact server is configured" not in result.stderr
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}


def test_it_names_a_server_that_refuses_connections(demo: DemoSystem) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = demo.run("install", str(_by_name(demo, url)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"artifact server {url}: unreachable after 1 attempts (" in result.stderr
    assert "refused" in result.stderr


def test_it_says_which_server_lacks_the_artifact(demo: DemoSystem, server: Running) -> None:  # noqa: F811
    result = demo.run("plan", str(_by_name(demo, server.url, server.ca)))
    assert result.returncode == 2
    assert f"artifact server {server.url}: has no artifact 'rtos-v3' for device type 'rtos'" in result.stderr


def test_it_evicts_after_a_deployment_what_no_kept_manifest_needs(demo: DemoSystem) -> None:
    (demo.root / "conf" / "mender-orchestrator.conf").write_text('{"ArtifactsCache": {"MaxSizeBytes": 1}}')
    v1 = _bundle(demo, "v1.tar", "manifest-v1.yaml", "gateway-v1.mender", "rtos-v1.mender", gz=False)
    v2 = _bundle(demo, "v2.tar", "manifest-v2.yaml", "gateway-v2.mender", "rtos-v2.mender", gz=False)
    v3 = _bundle(demo, "v3.tar", "manifest-v3.yaml", "gateway-v3.mender", "rtos-v3.mender", gz=False)
    assert demo.run("bundle", "add", str(v1)).returncode == 0
    unneeded = set(_store(demo))
    assert demo.run("install", str(v2)).returncode == 0
    assert demo.versions() == V2
    assert not unneeded & set(_store(demo))  # no manifest needs v1: evicted by the deployment
    assert not list((demo.datastore / "bundles" / "1" / "artifacts").iterdir())
    after_v2 = set(_store(demo))
    assert demo.run("install", str(v3)).returncode == 0
    assert after_v2 < set(_store(demo)) and len(_store(demo)) == 4  # active (v3) and previous (v2)
    assert demo.run("install", "--previous").returncode == 0  # previous still installable
    assert demo.versions() == V2


def test_it_keeps_the_outcome_when_retention_fails(demo: DemoSystem) -> None:
    (demo.root / "conf" / "mender-orchestrator.conf").write_text('{"ArtifactsCache": {"MaxSizeBytes": 1}}')
    lock = demo.datastore / "artifacts" / ".tmp.lock"
    lock.mkdir(parents=True)  # the store cannot take its lock: retention fails
    result = demo.install("manifest-v2.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "artifact store retention after the deployment failed" in result.stderr
    history = json.loads(demo.run("history", "--json").stdout)
    assert history[0]["status"] == "succeeded" and demo.versions() == V2
