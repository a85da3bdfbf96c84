"""`orchestrator artifact read|validate|write` through real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.artifact_helpers import HELLO, Keys, Surgeon, mender_artifact, session_keys, sha

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return session_keys(tmp_path_factory)


def run(*args: str | Path, manage: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = (
        [sys.executable, str(ROOT / "manage.py"), "orchestrator"]
        if manage
        else [str(ROOT / "bin" / "mender-orchestrator")]
    )
    return subprocess.run([*prefix, "artifact", *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def written(tmp_path: Path, keys: Keys) -> Path:
    (tmp_path / "hello.txt").write_bytes(HELLO)
    (tmp_path / "meta.json").write_text('{"k": "v"}')
    (tmp_path / "ArtifactInstall_Enter_00_x").write_text("#!/bin/sh\n")
    out = tmp_path / "app.mender"
    result = run(
        "write",
        "module-image",
        "-n",
        "app-1.0",
        "-t",
        "qemux86-64",
        "--device-type",
        "rpi4",
        "-T",
        "single-file",
        "-f",
        tmp_path / "hello.txt",
        "-o",
        out,
        "-p",
        "a:b",
        "-d",
        "c:d",
        "--clears-provides",
        "x.*",
        "-N",
        "prev",
        "-g",
        "grp",
        "-G",
        "g0",
        "-m",
        tmp_path / "meta.json",
        "-s",
        tmp_path / "ArtifactInstall_Enter_00_x",
        "--compression",
        "lzma",
        "-k",
        keys.ec_private,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_it_writes_and_reads_back_as_json(written: Path, keys: Keys) -> None:
    result = run("read", written, "--json", "-k", keys.ec_public)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["name"] == "app-1.0" and doc["device_types"] == ["qemux86-64", "rpi4"]
    assert doc["provides"] == {"a": "b", "rootfs-image.single-file.version": "app-1.0"}
    assert doc["depends"] == {"c": ["d"]} and doc["clears_provides"] == ["x.*", "rootfs-image.single-file.*"]
    assert (doc["group"], doc["depends_artifact_name"], doc["depends_artifact_group"]) == (
        "grp",
        ["prev"],
        ["g0"],
    )
    assert doc["meta_data"] == {"k": "v"} and doc["scripts"] == ["ArtifactInstall_Enter_00_x"]
    assert doc["files"] == [{"name": "hello.txt", "size": len(HELLO), "sha256": sha(HELLO)}]
    assert doc["header_compression"] == "xz" and doc["signed"] and len(doc["signer_fingerprint"]) == 64
    assert mender_artifact("validate", written, "-k", keys.ec_public).returncode == 0


def test_it_prints_a_human_readable_form(written: Path) -> None:
    result = run("read", written, manage=True)
    assert result.returncode == 0, result.stderr
    for text in (
        "Name: app-1.0",
        "Signature: signed but no key",
        "Type:   single-file",
        "a: b",
        "ArtifactInstall_Enter_00_x",
        f"checksum: {sha(HELLO)}",
    ):
        assert text in result.stdout


def test_it_validates(written: Path, keys: Keys) -> None:
    assert run("validate", written, "-k", keys.ec_public).returncode == 0
    wrong = run("validate", written, "-k", keys.rsa_public)
    assert wrong.returncode == 1
    assert (
        wrong.stderr.count("\n") == 1 and "manifest.sig" in wrong.stderr and "Traceback" not in wrong.stderr
    )


def test_it_exits_1_with_one_line_naming_the_member(written: Path, tmp_path: Path) -> None:
    surgeon = Surgeon.load(written)
    surgeon.get("manifest").data = surgeon.get("manifest").data.replace(sha(HELLO).encode(), b"0" * 64)
    bad = surgeon.save(tmp_path / "bad.mender")
    result = run("validate", bad)
    assert result.returncode == 1
    assert result.stderr == f"{bad}: data/0000.tar.xz: hello.txt: checksum mismatch\n"


def test_it_exits_2_on_usage_errors(tmp_path: Path) -> None:
    assert run("read").returncode == 2
    assert run("read", tmp_path / "missing.mender").returncode == 2
    assert run("write", "module-image", "-n", "a", "-t", "d", "-o", tmp_path / "x.mender").returncode == 2
    missing = run(
        "write", "rootfs-image", "-n", "a", "-t", "d", "-f", tmp_path / "nope", "-o", tmp_path / "x.mender"
    )
    assert missing.returncode == 2 and "nope" in missing.stderr
    bad_pair = run(
        "write", "rootfs-image", "-n", "a", "-t", "d", "-f", __file__, "-p", "novalue", "-o", tmp_path / "x"
    )
    assert bad_pair.returncode == 2


def test_it_exits_1_when_a_write_fails(tmp_path: Path, keys: Keys) -> None:
    (tmp_path / "bad name!").write_text("x")
    bad = run(
        "write",
        "module-image",
        "-n",
        "a",
        "-t",
        "d",
        "-T",
        "m",
        "-f",
        tmp_path / "bad name!",
        "-o",
        tmp_path / "o",
    )
    assert bad.returncode == 1 and "invalid payload file name" in bad.stderr
    p384 = run(
        "write",
        "rootfs-image",
        "-n",
        "a",
        "-t",
        "d",
        "-f",
        __file__,
        "-k",
        keys.p384_private,
        "-o",
        tmp_path / "o",
    )
    assert p384.returncode == 1 and "only P-256" in p384.stderr
    assert not (tmp_path / "o").exists()
