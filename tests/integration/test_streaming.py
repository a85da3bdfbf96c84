"""Server artifacts streamed into Download (docs/bytes.md), end to end: the demo system's real
interfaces, the real command line, a real HTTPS server speaking Mender's device deployments API.
Without the artifacts cache nothing is stored; a dropped connection resumes with Range; a
corrupted stream fails Download; with the cache: one copy, hit and miss, a full cache, clean-up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.engine.test_server import (
    TOKEN,
    Running,
    server,  # noqa: F401 - the loopback HTTPS server fixture
)
from tests.integration.conftest import DemoSystem
from tests.integration.test_crash_matrix import kill_during, sleep_in, start_install
from updates.engine.artifact import write_artifact

PAYLOAD = 3 << 20  # big enough that a connection can drop in the middle of the payload


def _artifact(demo: DemoSystem, name: str, ctype: str, size: int = PAYLOAD) -> tuple[Path, bytes]:
    build = demo.root / "build"
    payload = build / f"{name}.img"
    data = os.urandom(size)
    payload.write_bytes(data)
    out = build / f"{name}.mender"
    write_artifact(
        out,
        kind="module-image",
        name=name,
        device_types=[ctype],
        payload_type=ctype,
        files=[payload],
        compression="none",
    )
    return out, data


def _serve_v3(demo: DemoSystem, server: Running, cache: dict[str, object] | None = None) -> dict[str, bytes]:  # noqa: F811
    """gateway-v3 and rtos-v3 on the server only; the conf points at it; returns the payloads."""
    payloads = {}
    for number, (name, ctype) in enumerate((("gateway-v3", "gateway"), ("rtos-v3", "rtos"))):
        path, payloads[name] = _artifact(demo, name, ctype)
        server.state.add(f"id{number}", path)
    (demo.root / "token").write_text(TOKEN)
    conf: dict[str, object] = {
        "ArtifactServer": {"URL": server.url, "TokenFile": str(demo.root / "token")},
        "ServerCertificate": str(server.ca),
    }
    if cache is not None:
        conf["ArtifactsCache"] = cache
    (demo.root / "conf" / "mender-orchestrator.conf").write_text(json.dumps(conf))
    manifest = demo.system / "by-name.yaml"
    manifest.write_text(
        (demo.system / "manifest-v3.yaml")
        .read_text()
        .replace("artifact_path: artifacts/", "# artifact_path: artifacts/")
    )
    return payloads


def _store(demo: DemoSystem) -> list[str]:
    root = demo.datastore / "artifacts"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def _payload_of(demo: DemoSystem, device: str) -> bytes:
    return (
        demo.device(device) / "payload" / ("gateway-v3.img" if device == "G13" else "rtos-v3.img")
    ).read_bytes()


def test_a_streamed_install_leaves_no_copy_in_the_store(demo: DemoSystem, server: Running) -> None:  # noqa: F811
    payloads = _serve_v3(demo, server)
    demo.answer("R998", "NeedsUnpackedArtifact", "No")  # one board takes the whole .mender as one stream
    done = demo.install("by-name.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert demo.versions() == {"G13": "gateway-v3", "R456": "rtos-v3", "R998": "rtos-v3"}
    assert _payload_of(demo, "G13") == payloads["gateway-v3"]
    assert _payload_of(demo, "R456") == payloads["rtos-v3"]
    packed = (demo.device("R998") / "payload" / "artifact.mender").read_bytes()
    assert packed == server.state.files["id1"]
    assert _store(demo) == []  # streamed: nothing was stored whole
    assert list((demo.datastore / "streams").iterdir()) == []  # nor kept what the plan needed


def test_a_dropped_connection_resumes_with_range(demo: DemoSystem, server: Running) -> None:  # noqa: F811
    payloads = _serve_v3(demo, server)
    # Planning reads each artifact's head (downloads 1 and 2); the third is gateway-v3's Download.
    server.state.drop_after, server.state.drop_on = PAYLOAD // 2, 3
    done = demo.install("by-name.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _payload_of(demo, "G13") == payloads["gateway-v3"]
    assert [int(r[6:-1]) > PAYLOAD // 4 for r in server.state.ranges] == [True]
    assert _store(demo) == []


def test_a_corrupted_stream_fails_download_and_activates_nothing(demo: DemoSystem, server: Running) -> None:  # noqa: F811
    _serve_v3(demo, server)
    good = server.state.files["id1"]
    middle = len(good) // 2
    server.state.files["id1"] = good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :]
    done = demo.install("by-name.yaml")
    assert done.returncode != 0
    assert "checksum mismatch" in done.stdout + done.stderr
    # The rtos boards failed in Download: Cleanup only, still v1; the gateway group rolled back.
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
    assert "ArtifactInstall" not in demo.states("R456")


def test_the_cache_keeps_one_copy_and_a_second_install_hits_it(demo: DemoSystem, server: Running) -> None:  # noqa: F811
    _serve_v3(demo, server, cache={"Enabled": True})
    demo.fail("R456", "ArtifactInstall")
    assert demo.install("by-name.yaml").returncode != 0  # rolled back, but the artifacts were used
    # Two rtos boards share rtos-v3: one copy, filled by the first. Downloads: two heads at
    # planning, then gateway-v3 and rtos-v3 once each (the second board read the cache).
    assert len(_store(demo)) == 2
    assert server.state.downloads == 4
    (demo.device("R456") / "ArtifactInstall.FAIL").unlink()
    done = demo.install("by-name.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert demo.versions() == {"G13": "gateway-v3", "R456": "rtos-v3", "R998": "rtos-v3"}
    assert server.state.downloads == 4  # a hit downloads nothing


def test_cached_artifacts_a_deployment_did_not_use_are_deleted_at_its_end(
    demo: DemoSystem,
    server: Running,  # noqa: F811
) -> None:
    _serve_v3(demo, server, cache={"Enabled": True})
    assert demo.install("by-name.yaml").returncode == 0
    assert len(_store(demo)) == 2
    assert demo.install("manifest-v2.yaml").returncode == 0  # v2 from files: uses no cached artifact
    assert _store(demo) == []


def test_an_artifact_that_does_not_fit_the_cache_fails_the_deployment(
    demo: DemoSystem,
    server: Running,  # noqa: F811
) -> None:
    _serve_v3(demo, server, cache={"Enabled": True, "MaxSizeBytes": PAYLOAD})
    done = demo.install("by-name.yaml")
    assert done.returncode != 0
    assert "do not fit ArtifactsCache.MaxSizeBytes" in done.stdout + done.stderr
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
    assert _store(demo) == []


@pytest.mark.cli_subprocess
def test_a_crash_during_a_streamed_download_downloads_again_on_resume(
    demo: DemoSystem,
    server: Running,  # noqa: F811
) -> None:
    payloads = _serve_v3(demo, server)
    sleep_in(demo, "G13", "Download")
    kill_during(demo, start_install(demo, "by-name.yaml"), "G13", "Download")
    resumed = demo.run("resume", "--interrupted")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert demo.versions() == {"G13": "gateway-v3", "R456": "rtos-v3", "R998": "rtos-v3"}
    assert demo.states("G13")[:3] == ["Download", "Download", "ArtifactInstall"]
    assert _payload_of(demo, "G13") == payloads["gateway-v3"]
    assert _store(demo) == []


def test_an_artifact_the_cache_cannot_make_room_for_fails_its_download(
    demo: DemoSystem,
    server: Running,  # noqa: F811
) -> None:
    # Each artifact fits alone; both do not, and the first is used by this very deployment.
    _serve_v3(demo, server, cache={"Enabled": True, "MaxSizeBytes": PAYLOAD * 3 // 2})
    done = demo.install("by-name.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "kept for this deployment and bundles" in done.stdout + done.stderr
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
    assert "ArtifactInstall" not in demo.states("R456")
