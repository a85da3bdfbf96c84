"""Delta bundles (docs/bytes.md) through the real command line on the demo system: made from the
demo's v1 -> v2 bundles and installed; a missing base refused at upload by name; a delta that
rebuilds to other bytes refused before any interface runs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.integration.conftest import DemoSystem


def _bundle(demo: DemoSystem, version: int) -> Path:
    out = demo.root / f"v{version}.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(demo.system / f"manifest-v{version}.yaml", f"manifest-v{version}.yaml")
        for ctype in ("gateway", "rtos"):
            name = f"{ctype}-v{version}.mender"
            tar.add(demo.system / "artifacts" / name, f"artifacts/{name}")
    return out


@pytest.fixture
def delta(demo: DemoSystem) -> Path:
    out = demo.root / "v1-to-v2.tar"
    made = demo.run("bundle", "delta", str(_bundle(demo, 1)), str(_bundle(demo, 2)), "-o", str(out))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "artifacts/rtos-v2.mender: delta against rtos-v1" in made.stdout
    return out


def test_a_delta_bundle_from_v1_to_v2_installs(demo: DemoSystem, delta: Path) -> None:
    assert demo.run("install", str(_bundle(demo, 1))).returncode == 0  # the bases, in the store
    with tarfile.open(delta) as tar:
        names = tar.getnames()
    assert names[0] == "deltas.json" and not any(n.endswith(".mender") for n in names)
    done = demo.run("install", str(delta))
    assert done.returncode == 0, done.stdout + done.stderr
    assert demo.versions() == {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}
    payload = (demo.device("R456") / "payload").iterdir()
    assert [p.read_text() for p in payload] == ["demo firmware rtos-v2\n"]
    # The store keeps the deltas, not the artifacts they rebuild (docs/bytes.md).
    stored = {p.name for p in (demo.datastore / "artifacts").iterdir() if p.is_file()}
    full = {_sha(demo.system / "artifacts" / f"{t}-v2.mender") for t in ("gateway", "rtos")}
    assert full and not full & stored
    with tarfile.open(delta) as tar:
        deltas = {hashlib.sha256(_read(tar, n)).hexdigest() for n in names if n.startswith("deltas/")}
    assert len(deltas) == 2 and deltas <= stored
    member = demo.datastore / "bundles" / "2" / "artifacts" / "rtos-v2.mender"
    assert not member.is_symlink() and member.stat().st_size < 64 << 10  # a reference (backups keep it)
    shown = demo.run("bundle", "show", "2").stdout
    assert f"rtos-v2 {_sha(demo.system / 'artifacts' / 'rtos-v2.mender')[:12]}, stored as a delta (" in shown


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None
    return member.read()


def test_a_missing_base_is_refused_at_upload_by_name(demo: DemoSystem, delta: Path) -> None:
    added = demo.run("bundle", "add", str(delta))
    assert added.returncode == 2
    assert "missing base artifact(s): gateway-v1 (sha256 " in added.stderr
    assert "rtos-v1 (sha256 " in added.stderr and "the base of artifacts/rtos-v2.mender" in added.stderr
    assert "no bundles yet" in demo.run("bundle", "list").stdout


def test_a_delta_that_rebuilds_to_other_bytes_is_refused_before_any_interface_runs(
    demo: DemoSystem, delta: Path
) -> None:
    assert demo.run("install", str(_bundle(demo, 1))).returncode == 0
    calls = len(demo.calls())
    forged = demo.root / "forged.tar"
    with tarfile.open(delta) as source, tarfile.open(forged, "w") as sink:
        for info in source:
            data = source.extractfile(info)
            assert data is not None
            raw = data.read()
            if info.name == "deltas.json":
                index = json.loads(raw)
                index["artifacts"][0]["sha256"] = "0" * 64
                raw = json.dumps(index).encode()
                info.size = len(raw)
            sink.addfile(info, io.BytesIO(raw))
    done = demo.run("install", str(forged))
    assert done.returncode == 2
    assert f"not the listed {'0' * 64}" in done.stderr
    assert len(demo.calls()) == calls  # no interface was asked anything
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}


def test_a_stored_delta_that_rebuilds_to_other_bytes_fails_download(demo: DemoSystem, delta: Path) -> None:
    assert demo.run("install", str(_bundle(demo, 1))).returncode == 0
    added = demo.run("bundle", "add", str(delta))
    assert added.returncode == 0, added.stdout + added.stderr
    with tarfile.open(delta) as tar:
        rtos = hashlib.sha256(_read(tar, "deltas/rtos-v2.mender.zstd-patch-from")).hexdigest()
    stored = demo.datastore / "artifacts" / rtos
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[-8] ^= 0xFF  # within the last frame's data: still decodes, to other bytes (or fails)
    stored.write_bytes(bytes(data))
    done = demo.run("install", "2")  # the delta bundle, by its number
    assert done.returncode != 0
    assert (
        "Download failed: reading the next payload failed: artifact 'rtos-v2' (rebuilt from its delta): the delta"
        in done.stdout
    )
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
