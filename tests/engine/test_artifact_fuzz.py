"""Mutated artifacts either verify or raise ArtifactError, and never write outside extract_to."""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.artifact_helpers import Surgeon, hello_module, tar_bytes
from updates.engine.artifact import ArtifactError, read_artifact

NAMES = [
    "version",
    "manifest",
    "manifest.sig",
    "header.tar.gz",
    "header.tar",
    "data/0000.tar.gz",
    "data/0000.tar",
    "data/0001.tar",
    "../evil",
    "/tmp/evil",
    "data/../../evil.tar",
    "hello.txt",
    "scripts/ArtifactInstall_Enter_00_x",
    "headers/0000/meta-data",
    "a" * 120,
]
TYPES = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"L", b"K", b"x", b"g", b"S", b"D", b"V"]


@cache
def bases() -> tuple[bytes, ...]:
    """Valid artifacts to mutate: gzip (with scripts/meta-data) and uncompressed (inner tars exposed)."""
    directory = Path(tempfile.mkdtemp(prefix="artifact-fuzz-"))
    script = directory / "ArtifactInstall_Enter_00_x"
    script.write_text("#!/bin/sh\n")
    gz, _ = hello_module(directory, "gz.mender", meta_data={"k": "v"}, scripts=[script])
    plain, _ = hello_module(directory, "plain.mender", compression="none")
    return gz.read_bytes(), plain.read_bytes()


def _header_offsets(data: bytes) -> list[int]:
    """Offsets of every 512-byte block that parses as a tar header, inner tars included."""
    return [i for i in range(0, len(data) - 511, 512) if _is_header(data[i : i + 512])]


def _is_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def _rechecksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


@st.composite
def header_edit(draw: st.DrawFn, data: bytes) -> bytes:
    offsets = _header_offsets(data)
    start = draw(st.sampled_from(offsets))
    block = bytearray(data[start : start + 512])
    field = draw(st.sampled_from(["name", "type", "size", "link"]))
    if field == "name":
        block[0:100] = draw(st.sampled_from(NAMES)).encode()[:100].ljust(100, b"\0")
    elif field == "type":
        block[156:157] = draw(st.sampled_from(TYPES))
    elif field == "size":
        block[124:136] = b"%011o\0" % draw(st.integers(0, 1 << 20))
    else:
        block[157:257] = draw(st.sampled_from(NAMES)).encode()[:100].ljust(100, b"\0")
    if draw(st.booleans()):
        _rechecksum(block)
    return data[:start] + bytes(block) + data[start + 512 :]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(bases()))
    kind = draw(st.sampled_from(["flip", "truncate", "reorder", "rename", "header", "header2"]))
    if kind == "flip":
        buffer = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            buffer[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(buffer)
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    surgeon = Surgeon(Surgeon.load_bytes(data).members)
    if kind == "reorder":
        surgeon.members = draw(st.permutations(surgeon.members))
        return tar_bytes(surgeon.members)
    if kind == "rename":
        draw(st.sampled_from(surgeon.members)).name = draw(st.sampled_from(NAMES))
        return tar_bytes(surgeon.members)
    edited = draw(header_edit(data))
    return draw(header_edit(edited)) if kind == "header2" else edited


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_it_survives_mutated_artifacts(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        root = Path(tmp)
        (root / "artifact.mender").write_bytes(data)
        (root / "out").mkdir()
        outside = root.parent / "evil"
        before = _snapshot(root)
        try:
            info = read_artifact(root / "artifact.mender", extract_to=root / "out")
        except ArtifactError:
            assert list((root / "out").iterdir()) == []
        else:
            assert sorted(p.name for p in (root / "out").iterdir()) == sorted(f.name for f in info.files)
        after = {k: v for k, v in _snapshot(root).items() if not k.startswith("out/")}
        assert after == before
        assert not outside.exists()
