"""The content-addressed store: names only complete bytes, read-only, once per content."""

from __future__ import annotations

import hashlib
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from updates.engine.store import ArtifactStore, NoSpaceError, StoreEntry, plan_eviction


def _put(store: ArtifactStore, data: bytes) -> str:
    with store.writer("test") as out:
        for i in range(0, len(data), 1000):
            out.write(data[i : i + 1000])
        return out.commit().sha256


def test_it_names_an_object_by_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    data = b"x" * 5000
    sha = _put(store, data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.path(sha).read_bytes() == data


def test_it_makes_stored_files_read_only(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    mode = store.path(_put(store, b"abc")).stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_it_stores_the_same_bytes_once(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with store.writer("a") as out:
        out.write(b"same")
        first = out.commit()
    with store.writer("b") as out:
        out.write(b"same")
        second = out.commit()
    assert first.new and not second.new
    assert [e.sha256 for e in store.entries()] == [first.sha256]
    assert list(store.tmp_dir.iterdir()) == []


def test_it_leaves_nothing_behind_when_a_write_is_aborted(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer("x") as out:
        out.write(b"partial")
        raise RuntimeError("verification failed")
    assert store.entries() == [] and list(store.tmp_dir.iterdir()) == []


def test_it_refuses_a_write_that_does_not_fit_on_the_disk(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(NoSpaceError, match=r"big\.mender: needs"):
        store.writer("big.mender", expected_size=1 << 60)


def test_it_restarts_from_zero_after_reset(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with store.writer("x") as out:
        out.write(b"garbage")
        out.reset()
        out.write(b"good")
        assert out.commit().sha256 == hashlib.sha256(b"good").hexdigest()


def _entry(name: str, size: int, mtime: float) -> StoreEntry:
    return StoreEntry(name * 64, size, mtime)


def test_it_evicts_the_oldest_unused_first_down_to_the_budget() -> None:
    entries = [_entry("a", 100, 1), _entry("b", 100, 2), _entry("c", 100, 3)]
    plan = plan_eviction(entries, needed=set(), last_used={}, budget=150)
    assert [e.sha256[0] for e in plan.evict] == ["a", "b"]


def test_it_never_evicts_what_a_manifest_needs() -> None:
    entries = [_entry("a", 100, 1), _entry("b", 100, 2)]
    plan = plan_eviction(entries, needed={"a" * 64}, last_used={}, budget=1)
    assert [e.sha256[0] for e in plan.evict] == ["b"]


def test_it_goes_by_last_use_rather_than_age_when_known() -> None:
    entries = [_entry("a", 100, 1), _entry("b", 100, 2)]
    plan = plan_eviction(entries, needed=set(), last_used={"a" * 64: 10.0}, budget=100)
    assert [e.sha256[0] for e in plan.evict] == ["b"]


def test_it_keeps_everything_with_a_zero_budget() -> None:
    assert plan_eviction([_entry("a", 1 << 40, 1)], needed=set(), last_used={}, budget=0).evict == ()


ROOT = Path(__file__).resolve().parents[2]
# A writer in another process that gets SIGKILLed mid-write, as a killed `bundle add` would.
_WRITER = """
import sys, time
from pathlib import Path
from updates.engine.store import ArtifactStore
out = ArtifactStore(Path(sys.argv[1])).writer("dies")
out.write(b"half")
out.flush()
print("writing", flush=True)
time.sleep(60)
"""


def test_it_counts_only_temp_files_no_live_writer_holds_as_leftovers(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        with store.writer("live here") as out:
            out.write(b"still coming")
            assert store.leftovers() == []  # both writers are alive
            child.kill()
            child.wait()
            dead = store.leftovers()
        assert [p.name for p in dead] == [p.name for p in store.tmp_dir.iterdir()]
        assert len(dead) == 1 and dead[0].read_bytes() == b"half"
    finally:
        child.kill()
        child.wait()
