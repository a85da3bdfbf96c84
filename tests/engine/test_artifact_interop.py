"""Interop both ways with Debian's mender-artifact 3.9 (a required test dependency)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.engine.artifact_helpers import (
    HELLO,
    Keys,
    Surgeon,
    hello_module,
    mender_artifact,
    session_keys,
    sha,
    untar,
)
from updates.engine.artifact import (
    ArtifactError,
    PayloadFile,
    key_fingerprint,
    load_private_key,
    load_public_key,
    read_artifact,
)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return session_keys(tmp_path_factory)


def _inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "hello.txt").write_bytes(HELLO)
    (tmp_path / "meta.json").write_text('{"key":"value","n":1}')
    (tmp_path / "ArtifactInstall_Enter_00_test").write_text("#!/bin/sh\necho hi\n")
    return {n: tmp_path / n for n in ("hello.txt", "meta.json", "ArtifactInstall_Enter_00_test")}


@pytest.mark.parametrize("compression", ["none", "gzip", "lzma"])
def test_it_reads_module_images_written_by_mender_artifact(tmp_path: Path, compression: str) -> None:
    i = _inputs(tmp_path)
    out = tmp_path / "ma.mender"
    result = mender_artifact(
        "write",
        "module-image",
        "-T",
        "single-file",
        "-t",
        "qemux86-64",
        "-t",
        "rpi4",
        "-n",
        "app-1.0",
        "-f",
        i["hello.txt"],
        "-m",
        i["meta.json"],
        "-s",
        i["ArtifactInstall_Enter_00_test"],
        "-p",
        "extra.key:v1",
        "-d",
        "needs:x",
        "--clears-provides",
        "old.*",
        "-g",
        "grp",
        "-G",
        "g1",
        "-N",
        "prev-1",
        "--compression",
        compression,
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "x").mkdir()
    info = read_artifact(out, extract_to=tmp_path / "x")
    assert (info.name, info.group, info.device_types) == ("app-1.0", "grp", ("qemux86-64", "rpi4"))
    assert (info.depends_artifact_name, info.depends_artifact_group) == (("prev-1",), ("g1",))
    assert info.payload_type == "single-file"
    assert info.provides == {"extra.key": "v1", "rootfs-image.single-file.version": "app-1.0"}
    assert info.depends == {"needs": ["x"]}
    assert info.clears_provides == ("old.*", "rootfs-image.single-file.*")
    assert info.meta_data == {"key": "value", "n": 1}
    assert info.scripts == ("ArtifactInstall_Enter_00_test",)
    assert info.files == (PayloadFile("hello.txt", len(HELLO), sha(HELLO)),)
    assert info.header_compression == {"lzma": "xz"}.get(compression, compression)
    assert (tmp_path / "x" / "hello.txt").read_bytes() == HELLO
    assert info.all_provides()["artifact_group"] == "grp"


def test_it_reads_rootfs_images_written_by_mender_artifact(tmp_path: Path) -> None:
    image = tmp_path / "rootfs.ext4"
    image.write_bytes(b"\x53\xef" * 5000)
    out = tmp_path / "rootfs.mender"
    written = mender_artifact("write", "rootfs-image", "-t", "dev", "-n", "rootfs-2", "-f", image, "-o", out)
    assert written.returncode == 0
    info = read_artifact(out)
    assert info.payload_type == "rootfs-image"
    assert info.provides == {
        "rootfs-image.checksum": sha(image.read_bytes()),
        "rootfs-image.version": "rootfs-2",
    }
    assert info.clears_provides == ("artifact_group", "rootfs_image_checksum", "rootfs-image.*")
    assert info.meta_data is None and info.meta_data_raw == b""


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_it_verifies_artifacts_signed_by_mender_artifact(tmp_path: Path, keys: Keys, key: str) -> None:
    i = _inputs(tmp_path)
    private, public = getattr(keys, f"{key}_private"), load_public_key(getattr(keys, f"{key}_public"))
    written, signed = tmp_path / "w.mender", tmp_path / "s.mender"
    ours, _ = hello_module(tmp_path, "ours.mender")
    args = ("write", "module-image", "-T", "single-file", "-t", "d", "-n", "a", "-f", i["hello.txt"])
    assert mender_artifact(*args, "-k", private, "-o", written).returncode == 0
    assert mender_artifact("sign", ours, "-k", private, "-o", signed).returncode == 0
    for path in (written, signed):
        info = read_artifact(path, keys=[load_public_key(keys.other_rsa_public), public])
        assert info.signed and info.signer_fingerprint == key_fingerprint(public)
        assert read_artifact(path).signer_fingerprint is None


@pytest.mark.parametrize("compression", ["none", "gzip", "lzma"])
@pytest.mark.parametrize("key", [None, "rsa", "ec"])
def test_it_writes_artifacts_mender_artifact_validates_and_reads(
    tmp_path: Path, keys: Keys, compression: str, key: str | None
) -> None:
    i = _inputs(tmp_path)
    signing = None if key is None else load_private_key(getattr(keys, f"{key}_private"))
    path, _ = hello_module(
        tmp_path,
        "ours.mender",
        compression=compression,
        signing_key=signing,
        meta_data={"k": "v"},
        scripts=[i["ArtifactInstall_Enter_00_test"]],
        provides={"p.key": "pv"},
        depends={"d.key": ["a", "b"]},
        group="grp",
        depends_artifact_name=["prev"],
        depends_artifact_group=["g0"],
    )
    key_args = () if key is None else ("-k", getattr(keys, f"{key}_public"))
    validated = mender_artifact("validate", path, *key_args)
    assert validated.returncode == 0, validated.stderr
    shown = mender_artifact("read", path, *key_args)
    assert shown.returncode == 0, shown.stderr
    for text in (
        "Name: app-1.0",
        "qemux86-64",
        "Provides group: grp",
        "[prev]",
        "[g0]",
        "ArtifactInstall_Enter_00_test",
        "Type:   single-file",
        "p.key: pv",
        "rootfs-image.single-file.*",
        '"k": "v"',
        "name:     hello.txt",
        sha(HELLO),
    ):
        assert text in shown.stdout, text
    if key is not None:
        assert "Signature: signed and verified correctly" in shown.stdout
        assert mender_artifact("validate", path, "-k", keys.other_rsa_public).returncode != 0


def _headers(path: Path) -> dict[str, object]:
    header = next(m for m in untar(path.read_bytes()) if m.name.startswith("header.tar"))
    docs = {m.name: json.loads(m.data or b"null") for m in untar(header.data)}
    if docs["headers/0000/type-info"]["type"] == "":  # 3.9's rootfs-image quirk
        docs["headers/0000/type-info"]["type"] = "rootfs-image"
    return docs


OPTION_SETS = [
    ("module-image", []),
    ("module-image", ["--software-name", "foo"]),
    ("module-image", ["--software-version", "7.1"]),
    ("module-image", ["--software-filesystem", "fs", "--software-name", "nm"]),
    ("module-image", ["--no-default-software-version"]),
    ("module-image", ["--no-default-software-version", "--software-version", "7.1"]),
    ("module-image", ["--no-default-clears-provides", "--clears-provides", "x.y", "--clears-provides", "z"]),
    ("module-image", ["-p", "rootfs-image.single-file.version:override", "-d", "c:d", "-p", "a:b"]),
    ("rootfs-image", []),
    ("rootfs-image", ["--software-name", "foo"]),
    ("rootfs-image", ["--software-filesystem", "fs", "--software-version", "9"]),
    ("rootfs-image", ["--no-default-software-version"]),
    ("rootfs-image", ["--no-default-clears-provides", "-g", "grp", "-N", "n1", "-G", "g1"]),
    ("rootfs-image", ["--clears-provides", "foo", "--software-filesystem", "rootfs-image"]),
]


@pytest.mark.parametrize(("kind", "options"), OPTION_SETS, ids=[" ".join(o) or k for k, o in OPTION_SETS])
def test_it_writes_the_same_headers_as_mender_artifact(tmp_path: Path, kind: str, options: list[str]) -> None:
    i = _inputs(tmp_path)
    common = ["-t", "dev", "-n", "name-1", "-f", str(i["hello.txt"]), *options]
    type_args = ["-T", "single-file"] if kind == "module-image" else []
    theirs, ours = tmp_path / "theirs.mender", tmp_path / "ours.mender"
    assert mender_artifact("write", kind, *type_args, *common, "-o", theirs).returncode == 0
    cli = Path(__file__).resolve().parents[2] / "bin" / "mender-orchestrator"
    done = subprocess.run(
        [cli, "artifact", "write", kind, *type_args, *common, "-o", ours], capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert _headers(ours) == _headers(theirs)
    assert Surgeon.load(ours).names() == Surgeon.load(theirs).names()


def test_it_writes_reproducible_artifacts(tmp_path: Path) -> None:
    first, _ = hello_module(tmp_path, "first.mender", meta_data={"k": 1})
    second, _ = hello_module(tmp_path, "second.mender", meta_data={"k": 1})
    assert first.read_bytes() == second.read_bytes()


# ----- zstd: mender-artifact 3.10+ writes it, Debian's 3.9 cannot; real frames from the zstd tool


def _recompress(path: Path, out: Path, *, level: str) -> None:
    """header.tar and data/0000.tar of an uncompressed artifact, compressed by the `zstd` tool."""
    surgeon = Surgeon.load(path)
    for member in surgeon.members:
        if member.name in ("header.tar", "data/0000.tar"):
            done = subprocess.run(
                ["zstd", "-q", "-c", level], input=member.data, capture_output=True, check=True
            )
            member.name, member.data = f"{member.name}.zst", done.stdout
    header = surgeon.get("header.tar.zst")
    manifest = surgeon.get("manifest")
    manifest.data = manifest.data.replace(b"  header.tar\n", b"  header.tar.zst\n")
    surgeon.fix("header.tar.zst", header.data)
    surgeon.save(out)


def _unzstd(path: Path, out: Path) -> None:
    """The reverse: our zstd members decompressed by the `zstd` tool, for mender-artifact 3.9."""
    surgeon = Surgeon.load(path)
    for member in surgeon.members:
        if member.name.endswith(".zst"):
            done = subprocess.run(
                ["zstd", "-q", "-d", "-c"], input=member.data, capture_output=True, check=True
            )
            member.name, member.data = member.name.removesuffix(".zst"), done.stdout
    manifest = surgeon.get("manifest")
    manifest.data = manifest.data.replace(b"  header.tar.zst\n", b"  header.tar\n")
    surgeon.fix("header.tar", surgeon.get("header.tar").data)
    surgeon.save(out)


@pytest.mark.parametrize("level", ["-1", "-19"])
def test_it_reads_zstd_artifacts_made_from_mender_artifact_output(tmp_path: Path, level: str) -> None:
    i = _inputs(tmp_path)
    plain = tmp_path / "plain.mender"
    result = mender_artifact(
        "write", "module-image", "-T", "single-file", "-t", "qemux86-64", "-n", "app-zst",
        "-f", i["hello.txt"], "-m", i["meta.json"], "--compression", "none", "-o", plain,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    zst = tmp_path / "zst.mender"
    _recompress(plain, zst, level=level)
    assert [m.name for m in Surgeon.load(zst).members] == [
        "version",
        "manifest",
        "header.tar.zst",
        "data/0000.tar.zst",
    ]
    (tmp_path / "x").mkdir()
    info = read_artifact(zst, extract_to=tmp_path / "x")
    assert (info.name, info.header_compression, info.meta_data) == (
        "app-zst",
        "zstd",
        {"key": "value", "n": 1},
    )
    assert info.files == (PayloadFile("hello.txt", len(HELLO), sha(HELLO)),)
    assert (tmp_path / "x" / "hello.txt").read_bytes() == HELLO


def test_it_refuses_a_zstd_payload_that_does_not_match_the_manifest(tmp_path: Path) -> None:
    i = _inputs(tmp_path)
    plain, zst = tmp_path / "plain.mender", tmp_path / "zst.mender"
    result = mender_artifact(
        "write", "module-image", "-T", "single-file", "-t", "dev", "-n", "app",
        "-f", i["hello.txt"], "--compression", "none", "-o", plain,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _recompress(plain, zst, level="-3")
    surgeon = Surgeon.load(zst)
    data = surgeon.get("data/0000.tar.zst")
    data.data = data.data[:-7] + bytes(7)  # corrupt the end of the frame
    surgeon.save(zst)
    with pytest.raises(ArtifactError):
        read_artifact(zst, extract_to=tmp_path / "out")


@pytest.mark.parametrize("compression", ["zstd_fastest", "zstd_default", "zstd_better", "zstd_best"])
def test_it_writes_zstd_frames_that_the_zstd_tool_and_mender_artifact_accept(
    tmp_path: Path, compression: str
) -> None:
    ours, plain = tmp_path / "ours.mender", tmp_path / "plain.mender"
    written = hello_module(tmp_path, "ours.mender", compression=compression)[1]
    assert written.header_compression == "zstd"
    assert Surgeon.load(ours).names() == ["version", "manifest", "header.tar.zst", "data/0000.tar.zst"]
    assert read_artifact(ours).files == written.files
    _unzstd(ours, plain)
    result = mender_artifact("read", plain)
    assert result.returncode == 0, result.stderr
    assert "hello.txt" in result.stdout
