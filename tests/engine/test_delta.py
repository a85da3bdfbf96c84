"""The delta codec (docs/bytes.md): a delta rebuilds the artifact exactly, and a rebuild that gives
other bytes (a forged index, another base, a cut delta) is an error naming the member."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from updates.engine.delta import DeltaEntry, DeltaError, Reconstruction, make_delta, missing_bases


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    base = bytearray(os.urandom(1 << 20))
    new = bytearray(base)
    new[4096:8192] = os.urandom(4096)
    (tmp_path / "old").write_bytes(base)
    (tmp_path / "new").write_bytes(new)
    return tmp_path / "old", tmp_path / "new"


def _entry(new: Path, **changes: object) -> DeltaEntry:
    fields: dict[str, object] = {
        "member": "artifacts/fw-v2.mender",
        "name": "fw-v2",
        "sha256": hashlib.sha256(new.read_bytes()).hexdigest(),
        "size": new.stat().st_size,
        "base_sha256": "b" * 64,
        "base_name": "fw-v1",
        "delta": "deltas/fw-v2.mender.zstd-patch-from",
        **changes,
    }
    return DeltaEntry(**fields)  # type: ignore[arg-type]


def _rebuild(base: Path, delta: bytes, entry: DeltaEntry) -> bytes:
    rebuilt = Reconstruction(base, io.BytesIO(delta), entry)
    out = b""
    while chunk := rebuilt.read(1 << 16):
        out += chunk
    return out


def test_a_delta_is_small_and_rebuilds_the_artifact_exactly(tmp_path: Path) -> None:
    old, new = _pair(tmp_path)
    sink = io.BytesIO()
    size = make_delta(old, new, sink)
    assert size == len(sink.getvalue()) < 64 << 10  # one changed 4 KiB block of 1 MiB
    assert _rebuild(old, sink.getvalue(), _entry(new)) == new.read_bytes()


def test_a_rebuild_that_gives_other_bytes_names_the_member_and_both_digests(tmp_path: Path) -> None:
    old, new = _pair(tmp_path)
    sink = io.BytesIO()
    make_delta(old, new, sink)
    with pytest.raises(
        DeltaError, match=r"artifacts/fw-v2\.mender: the delta reconstructs to sha256 .* not the listed 0{64}"
    ):
        _rebuild(old, sink.getvalue(), _entry(new, sha256="0" * 64))
    other = tmp_path / "other"
    other.write_bytes(os.urandom(1 << 20))
    with pytest.raises(DeltaError, match=r"artifacts/fw-v2\.mender"):
        _rebuild(other, sink.getvalue(), _entry(new))  # the wrong base
    with pytest.raises(DeltaError, match=r"artifacts/fw-v2\.mender"):
        _rebuild(old, sink.getvalue()[: len(sink.getvalue()) // 2], _entry(new))  # cut short


def test_missing_bases_are_listed_by_name_and_sha256(tmp_path: Path) -> None:
    _, new = _pair(tmp_path)
    entries = [_entry(new), _entry(new, member="artifacts/x.mender", base_name="x-v1", base_sha256="c" * 64)]
    held = {"b" * 64: tmp_path / "old"}
    assert missing_bases(entries, held.get) == [f"x-v1 (sha256 {'c' * 64}), the base of artifacts/x.mender"]
