"""A file on disk is read through byte windows (pread, headers only through tarfile); a pipe
through tarfile's stream mode. Both must reach the same verdict on the same bytes."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.engine.artifact_helpers import Member, Surgeon, member_offsets, tar_bytes
from tests.engine.test_artifact_fuzz import mutated
from updates.engine.artifact import (
    ArtifactError,
    ArtifactInfo,
    ArtifactReader,
    ChecksumError,
    LimitError,
    TruncatedError,
    UnsafeMemberError,
    read_artifact,
    write_artifact,
)
from updates.engine.artifact.ranges import Window, file_window


def _streamed(data: bytes) -> ArtifactInfo | type[BaseException]:
    """The verdict of the stream-mode reader (a pipe or an HTTP body reads this way)."""
    try:
        reader = ArtifactReader(io.BytesIO(data))
        reader.read_header()
        for stream in reader.payloads():
            stream.drain()
        return reader.finish()
    except ArtifactError as exc:
        return type(exc)


def _from_file(path: Path, out: Path) -> ArtifactInfo | type[BaseException]:
    try:
        return read_artifact(path, extract_to=out)
    except ArtifactError as exc:
        return type(exc)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_windows_and_the_stream_reach_the_same_verdict(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="direct-") as tmp:
        path = Path(tmp) / "a.mender"
        path.write_bytes(data)
        (Path(tmp) / "out").mkdir()
        assert _from_file(path, Path(tmp) / "out") == _streamed(data)


def _plain(tmp_path: Path, files: dict[str, bytes]) -> Path:
    paths = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    out = tmp_path / "plain.mender"
    write_artifact(
        out,
        kind="module-image",
        name="p-1",
        device_types=["t"],
        files=paths,
        payload_type="x",
        compression="none",
    )
    return out


def test_an_uncompressed_artifact_extracts_every_file_verified(tmp_path: Path) -> None:
    files = {"a.bin": os.urandom(3 << 20) + b"x", "b.bin": b"", "c" * 90: os.urandom(1000)}
    src = tmp_path / "src"
    src.mkdir()
    path = _plain(src, files)
    (tmp_path / "out").mkdir()
    info = read_artifact(path, extract_to=tmp_path / "out")
    assert info == _streamed(path.read_bytes())
    for name, content in files.items():
        assert (tmp_path / "out" / name).read_bytes() == content
    assert {f.name: f.sha256 for f in info.files} == {
        n: hashlib.sha256(c).hexdigest() for n, c in files.items()
    }


def _data_tar(tmp_path: Path, data_tar: bytes) -> Path:
    base = _plain(tmp_path, {"a.bin": b"payload" * 100})
    surgeon = Surgeon.load(base)
    surgeon.replace("data/0000.tar", data_tar, fix_manifest=False)
    return surgeon.save(tmp_path / "bad.mender")


def _pax_bomb() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a.bin")
        info.size, info.pax_headers = 700, {"comment": "y" * (11 << 20)}
        tar.addfile(info, io.BytesIO(b"payload" * 100))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data_tar", "error"),
    [
        (lambda: tar_bytes([Member("../a.bin", b"payload" * 100)]), UnsafeMemberError),
        (lambda: tar_bytes([Member("a.bin", b"payload" * 99 + b"PAYLOAD")]), ChecksumError),
        (
            lambda: tar_bytes([Member("a.bin", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")]),
            UnsafeMemberError,
        ),
        (_pax_bomb, LimitError),
    ],
    ids=["escape", "checksum", "symlink", "pax-bomb"],
)
def test_a_hostile_data_tar_is_refused_alike(
    tmp_path: Path, data_tar: Callable[[], bytes], error: type[Exception]
) -> None:
    bad = _data_tar(tmp_path, data_tar())
    (tmp_path / "out").mkdir()
    with pytest.raises(error):
        read_artifact(bad, extract_to=tmp_path / "out")
    assert _streamed(bad.read_bytes()) is error
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("into", [0, 100, 700, 1000])
def test_a_cut_payload_is_truncated_alike(tmp_path: Path, into: int) -> None:
    path = _plain(tmp_path, {"a.bin": os.urandom(4000)})
    start = member_offsets(path)["data/0000.tar"][0]
    cut = tmp_path / "cut.mender"
    cut.write_bytes(path.read_bytes()[: start + 512 + into])
    with pytest.raises(ArtifactError) as caught:
        read_artifact(cut)
    assert _streamed(cut.read_bytes()) is type(caught.value)
    assert type(caught.value) in (TruncatedError, ChecksumError) or "missing" in str(caught.value)


def test_a_window_reads_forward_only_and_stops_at_its_end(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 8)
    with open(path, "rb") as handle:
        seen: list[bytes] = []
        outer = file_window(handle.fileno(), 0)
        inner = Window(outer, 100, 50, lanes=[lambda view: seen.append(bytes(view))])
        assert inner.read(10) == bytes(range(100, 110))
        inner.seek(40)  # skipped bytes still pass the lanes
        assert inner.read() == bytes(range(140, 150))
        assert inner.read(5) == b""
        with pytest.raises(ValueError, match="forward only"):
            inner.seek(0)
        outer.fan.wait()
        assert b"".join(seen) == bytes(range(100, 150))
