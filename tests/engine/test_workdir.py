from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from updates.engine.interface import InterfaceRunner
from updates.engine.workdir import (
    CHUNK,
    CurrentFiles,
    DownloadError,
    DownloadOutcome,
    HeaderFiles,
    PayloadSource,
    prepare_tree,
    remove_tree,
    run_download,
)

INTERFACES = Path(__file__).parent / "interfaces"
HEADER = HeaderFiles(
    artifact_name="app-2.0",
    artifact_group="apps",
    payload_type="rtos",
    header_info=b'{"payloads":[{"type":"rtos"}]}',
    type_info=b'{"type":"rtos"}',
    meta_data=b'{"k":"v"}',
)
CURRENT = CurrentFiles(artifact_name="app-1.0", artifact_group="apps", device_type="rtos")


class Payload:
    """A payload readable once; ``fail_at`` makes read() raise once that many bytes were read."""

    def __init__(
        self, name: str, data: bytes, *, fail_at: int | None = None, size: int | None = None
    ) -> None:
        self.name = name
        self.size = len(data) if size is None else size
        self._data = data
        self._pos = 0
        self._fail_at = fail_at

    def read(self, n: int = -1) -> bytes:
        assert 0 < n <= CHUNK, "payloads must be read in bounded chunks"
        if self._fail_at is not None and self._pos >= self._fail_at:
            raise ValueError(f"checksum mismatch in {self.name}")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


class Generated:
    """A big payload made up on the fly, so the test itself holds no more than one chunk."""

    name = "big.img"

    def __init__(self, size: int) -> None:
        self.size = size
        self._pos = 0
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        assert 0 < n <= CHUNK
        n = min(n, self.size - self._pos)
        chunk = bytes([(self._pos // 4096) % 251]) * n
        self._pos += n
        self.sha256.update(chunk)
        return chunk


def runner_with(tmp_path: Path, name: str, **kwargs: Any) -> InterfaceRunner:
    target = tmp_path / "data/interfaces/v1" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INTERFACES / name, target)
    target.chmod(0o755)
    return InterfaceRunner(data_dir=tmp_path / "data", **kwargs)


def tree_at(tmp_path: Path) -> Path:
    tree = tmp_path / "work" / "rtos.board-1"
    prepare_tree(tree, header=HEADER, current=CURRENT)
    return tree


def download(
    tmp_path: Path, interface: str, payloads: Iterable[Any], *, with_sizes: bool = False, **kwargs: Any
) -> tuple[Path, DownloadOutcome]:
    runner = runner_with(tmp_path, interface, **kwargs)
    tree = tree_at(tmp_path)
    state = "DownloadWithFileSizes" if with_sizes else "Download"
    argv = runner.argv(
        interface=interface, state=state, workdir=tree, component_type="rtos", component_id=None, args=[]
    )
    sources: Iterable[PayloadSource] = payloads
    return tree, run_download(runner, argv, tree=tree, payloads=sources, with_sizes=with_sizes)


def download_fails(
    tmp_path: Path, interface: str, payloads: Iterable[Any], **kwargs: Any
) -> tuple[Path, DownloadError]:
    with pytest.raises(DownloadError) as info:
        download(tmp_path, interface, payloads, **kwargs)
    tree = tmp_path / "work" / "rtos.board-1"
    assert not (tree / "stream-next").exists() and not (tree / "streams").exists()
    return tree, info.value


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---- the tree


def test_it_lays_out_the_tree(tmp_path: Path) -> None:
    tree = tree_at(tmp_path)
    files = {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert files == {
        "version": b"3\n",
        "current_artifact_name": b"app-1.0\n",
        "current_artifact_group": b"apps\n",
        "current_device_type": b"rtos\n",
        "header/artifact_name": b"app-2.0",
        "header/artifact_group": b"apps",
        "header/payload_type": b"rtos",
        "header/header-info": HEADER.header_info,
        "header/type-info": HEADER.type_info,
        "header/meta-data": b'{"k":"v"}',
    }
    assert sorted(p.name for p in tree.iterdir() if p.is_dir()) == ["header", "tmp"]
    assert list((tree / "tmp").iterdir()) == []


def test_it_writes_empty_group_files_and_a_null_meta_data(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    header = HeaderFiles("a", "", "rtos", b"{}", b"{}", None)
    prepare_tree(
        tree, header=header, current=CurrentFiles(artifact_name="old", artifact_group="", device_type="")
    )
    assert (tree / "current_artifact_group").read_bytes() == b""
    assert (tree / "current_device_type").read_bytes() == b""
    assert (tree / "header/artifact_group").read_bytes() == b""
    assert (tree / "header/meta-data").read_bytes() == b"null"


def test_it_keeps_the_tree_private(tmp_path: Path) -> None:
    tree = tree_at(tmp_path)
    for path in [tree, *tree.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_it_replaces_an_old_tree_and_its_leftovers(tmp_path: Path) -> None:
    tree = tree_at(tmp_path)
    (tree / "tmp/old-backup").write_text("x")
    (tree / "files").mkdir()
    (tmp_path / "work/.rtos.board-1.preparing").mkdir()  # a crash while preparing
    prepare_tree(tree, header=HEADER, current=CURRENT)
    assert list((tree / "tmp").iterdir()) == [] and not (tree / "files").exists()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["rtos.board-1"]


def test_it_removes_the_tree_and_tolerates_a_missing_one(tmp_path: Path) -> None:
    tree = tree_at(tmp_path)
    remove_tree(tree)
    remove_tree(tree)
    assert list((tmp_path / "work").iterdir()) == []


# ---- Download: streams mode


def test_it_streams_payloads_byte_identical(tmp_path: Path) -> None:
    blobs = {"a.bin": bytes(range(256)) * 5000, "empty": b"", "b,c-d.txt": b"hello\n"}
    tree, outcome = download(tmp_path, "cat-streams", [Payload(n, d) for n, d in blobs.items()])
    assert (outcome.mode, outcome.files, outcome.result.ok) == ("streams", (), True)
    assert (tree / "tmp/stream-lines").read_text() == "streams/a.bin\nstreams/empty\nstreams/b,c-d.txt\n"
    assert {n: (tree / "tmp" / n).read_bytes() for n in blobs} == blobs
    assert not (tree / "stream-next").exists() and not (tree / "streams").exists()
    assert not (tree / "files").exists()


def test_it_announces_sizes_in_sizes_mode(tmp_path: Path) -> None:
    payloads = [Payload("a.bin", b"12345"), Payload("b.bin", b"x" * 70000)]
    tree, outcome = download(tmp_path, "cat-streams", payloads, with_sizes=True)
    assert outcome.result.argv[1] == "DownloadWithFileSizes"
    assert (tree / "tmp/stream-lines").read_text() == "streams/a.bin 5\nstreams/b.bin 70000\n"
    assert (tree / "tmp/b.bin").read_bytes() == b"x" * 70000


def test_it_streams_a_packed_artifact_as_one_stream(tmp_path: Path) -> None:
    whole = b"version\0manifest\0" * 1000
    tree, outcome = download(tmp_path, "cat-streams", [Payload("artifact.mender", whole)])
    assert (
        outcome.mode == "streams" and (tree / "tmp/stream-lines").read_text() == "streams/artifact.mender\n"
    )
    assert (tree / "tmp/artifact.mender").read_bytes() == whole


def test_it_streams_many_mebibytes_with_flat_memory(tmp_path: Path) -> None:
    big = Generated(48 * CHUNK + 12345)
    tracemalloc.start()
    try:
        tree, outcome = download(tmp_path, "cat-streams", [big])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.result.ok
    assert sha256_of(tree / "tmp/big.img") == big.sha256.hexdigest()
    assert peak < 4 * CHUNK, f"peak {peak} bytes while streaming {big.size}"


# ---- Download: files mode


def test_it_falls_back_to_files_when_the_interface_ignores_the_streams(tmp_path: Path) -> None:
    blobs = {"a.bin": b"A" * (3 * CHUNK + 1), "b.txt": b"b"}
    tree, outcome = download(tmp_path, "ignore-download", [Payload(n, d) for n, d in blobs.items()])
    assert (outcome.mode, outcome.files, outcome.result.ok) == ("files", ("a.bin", "b.txt"), True)
    assert {p.name: p.read_bytes() for p in (tree / "files").iterdir()} == blobs
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tree / "files").iterdir())
    assert stat.S_IMODE((tree / "files").stat().st_mode) == 0o700
    assert not (tree / "stream-next").exists() and not (tree / "streams").exists()


def test_it_drops_files_left_by_an_earlier_attempt(tmp_path: Path) -> None:
    tree = tree_at(tmp_path)
    (tree / "files").mkdir()
    (tree / "files/stale").write_text("old")
    runner = runner_with(tmp_path, "cat-streams")
    argv = [str(runner.resolve("cat-streams")), "Download", str(tree), "rtos"]
    run_download(runner, argv, tree=tree, payloads=[Payload("a", b"a")], with_sizes=False)
    assert not (tree / "files").exists()


# ---- Download: failures


def test_it_fails_when_the_interface_stops_before_the_final_empty_read(tmp_path: Path) -> None:
    tree, error = download_fails(
        tmp_path, "first-stream-only", [Payload("a", b"first"), Payload("b", b"second")]
    )
    assert error.result is not None and error.result.exit_code == 0
    assert "before reading all streams" in error.reason
    assert (tree / "tmp/first").read_bytes() == b"first"


def test_it_fails_on_a_non_zero_exit_without_falling_back_to_files(tmp_path: Path) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "Download.exit").write_text("4")
    runner = runner_with(tmp_path, "answers")
    tree = tree_at(tmp_path)
    argv = [str(runner.resolve("answers")), "Download", str(tree), "rtos", str(answers)]
    with pytest.raises(DownloadError) as info:
        run_download(runner, argv, tree=tree, payloads=[Payload("a", b"a")], with_sizes=False)
    assert info.value.result is not None and info.value.result.exit_code == 4
    assert "code 4" in info.value.reason
    assert not (tree / "files").exists()


@pytest.mark.parametrize("fail_at", [2 * CHUNK, 3 * CHUNK])  # mid-stream, and at the final (EOF) read
def test_it_fails_without_hanging_when_a_payload_read_raises(tmp_path: Path, fail_at: int) -> None:
    started = time.monotonic()
    payloads = [Payload("a.bin", b"a" * 3 * CHUNK, fail_at=fail_at), Payload("b.bin", b"b")]
    tree, error = download_fails(tmp_path, "cat-streams", payloads)
    assert isinstance(error.__cause__, ValueError)
    assert "checksum mismatch in a.bin" in error.reason
    assert error.result is not None and not error.result.ok
    assert (tree / "tmp/stream-lines").read_text() == "streams/a.bin\n"
    assert time.monotonic() - started < 5


def test_it_fails_when_the_payload_iterator_raises_after_the_last_payload(tmp_path: Path) -> None:
    def payloads() -> Iterator[Payload]:
        yield Payload("a", b"a")
        raise ValueError("manifest lists files not part of artifact")

    tree, error = download_fails(tmp_path, "cat-streams", payloads())
    assert "manifest lists files" in error.reason and isinstance(error.__cause__, ValueError)
    # It was served stream "a" (the line is logged before the FIFO is opened), never the final EOF.
    assert (tree / "tmp/stream-lines").read_text() == "streams/a\n"
    assert error.result is not None and not error.result.ok


@pytest.mark.parametrize("size", [3, 5])
def test_it_fails_when_a_payload_size_is_wrong(tmp_path: Path, size: int) -> None:
    _, error = download_fails(tmp_path, "cat-streams", [Payload("a", b"abcd", size=size)])
    assert "payload a" in error.reason


@pytest.mark.parametrize("interface", ["cat-streams", "ignore-download"])
@pytest.mark.parametrize("name", ["../evil", "sub/evil", "..", "", "bad name", "/etc/evil"])
def test_it_refuses_payload_names_that_are_not_flat(tmp_path: Path, interface: str, name: str) -> None:
    tree, error = download_fails(tmp_path, interface, [Payload(name, b"x")])
    assert "not a flat file name" in error.reason
    assert not (tree / "files").exists() and not (tmp_path / "work/evil").exists()


def test_it_fails_on_duplicate_payload_names(tmp_path: Path) -> None:
    _, error = download_fails(tmp_path, "ignore-download", [Payload("a", b"1"), Payload("a", b"2")])
    assert "duplicate payload name 'a'" in error.reason


def test_it_times_out_an_interface_that_never_opens_stream_next(tmp_path: Path) -> None:
    _, error = download_fails(tmp_path, "sleeper", [Payload("a", b"a")], timeout=0.5, kill_grace=0.5)
    assert error.result is not None and error.result.timed_out and error.result.exit_code is None
    assert "timed out" in error.reason


def test_it_times_out_an_interface_that_stops_reading_mid_stream(tmp_path: Path) -> None:
    payload = Payload("a", b"a" * 2 * CHUNK)
    _, error = download_fails(tmp_path, "stall-reader", [payload], timeout=0.8, kill_grace=0.5)
    assert error.result is not None and error.result.timed_out


def test_a_tree_is_flushed_by_one_syncfs_or_else_path_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from updates.engine import fsutil

    flushed: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        flushed.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if fsutil._SYNCFS is not None:
        prepare_tree(tmp_path / "a", header=HEADER, current=CURRENT)
        assert flushed == [str(tmp_path)]  # one syncfs for the staging tree, then the rename
        flushed.clear()
    monkeypatch.setattr(fsutil, "_SYNCFS", None)
    prepare_tree(tmp_path / "b", header=HEADER, current=CURRENT)
    staging = str(tmp_path / ".b.preparing")
    assert len(flushed) == 14 and all(f.startswith(staging) for f in flushed[:-1])
    assert flushed[-1] == str(tmp_path)
