"""updates/engine/backuparchive.py on its own: the backup archive written and read back, and
every kind of member a restore must refuse before it touches the appliance. The commands around
it (`orchestrator backup` / `restore`) are tested in tests/integration/test_backup.py."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from updates.engine.backuparchive import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    ArchiveError,
    ArchiveWriter,
    archive_extract,
    safe_member_name,
)

PLENTY = lambda: 1 << 40  # noqa: E731 (free bytes)


def source(tmp_path: Path) -> Path:
    """A data store with a nested file, a hard link (a bundle's artifact) and a symlink."""
    store = tmp_path / "store"
    (store / "artifacts" / "bundles").mkdir(parents=True)
    (store / "artifacts" / "a.mender").write_bytes(b"artifact" * 1000)
    os.link(store / "artifacts" / "a.mender", store / "artifacts" / "bundles" / "a.mender")
    (store / "topology.yaml").write_text("components: []\n")
    (store / "link").symlink_to(store / "topology.yaml")
    (tmp_path / "db.sqlite3").write_bytes(b"SQLite format 3\0" + b"x" * 100)
    return store


def manifest(**extra: Any) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "created_ts": 1_700_000_000,
        "database": {"engine": "sqlite", "file": "orchestrator.sqlite3"},
        "migrations": {"updates": "0001_initial"},
        **extra,
    }


def write_backup(tmp_path: Path, *, lines: list[str] | None = None) -> Path:
    store = source(tmp_path)
    path = tmp_path / "backup.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        writer = ArchiveWriter(tar=tar, echo=(lines if lines is not None else []).append)
        writer.add_dir(tmp_path, "database")
        writer.add_file(tmp_path / "db.sqlite3", "database/orchestrator.sqlite3")
        writer.add_tree(store, "datastore")
        writer.add_manifest(manifest())
    return path


def test_a_backup_round_trips_with_its_hard_links_and_without_symlinks(tmp_path: Path) -> None:
    path = write_backup(tmp_path)
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert names[-1] == MANIFEST_NAME  # written last, once every sha256 is known
    assert "datastore/link" not in names

    dest = tmp_path / "out"
    dest.mkdir()
    extracted = archive_extract(path, dest, free_bytes=PLENTY)
    assert extracted.database.read_bytes() == (tmp_path / "db.sqlite3").read_bytes()
    copy = extracted.datastore / "artifacts" / "a.mender"
    linked = extracted.datastore / "artifacts" / "bundles" / "a.mender"
    assert copy.read_bytes() == b"artifact" * 1000
    assert copy.stat().st_ino == linked.stat().st_ino
    assert (extracted.datastore / "topology.yaml").read_text() == "components: []\n"
    members = extracted.manifest["members"]
    assert members["datastore/artifacts/bundles/a.mender"] == {"link": "datastore/artifacts/a.mender"}
    assert members["datastore/artifacts/a.mender"]["size"] == 8000
    assert extracted.manifest["format"] == FORMAT_VERSION


def test_a_large_member_gets_a_progress_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("updates.engine.backuparchive.PROGRESS_BYTES", 5000)
    lines: list[str] = []
    write_backup(tmp_path, lines=lines)
    assert lines == ["backup: datastore/artifacts/a.mender (0.0 MiB)"]


@pytest.mark.parametrize(
    "name",
    ["", "/etc/passwd", "database/../../etc/passwd", "datastore/./x", "datastore//x", "elsewhere/x", "a\\b"],
)
def test_a_bad_member_path_is_refused(name: str) -> None:
    with pytest.raises(ArchiveError):
        safe_member_name(name)


def test_good_member_paths_pass() -> None:
    assert safe_member_name("datastore/artifacts/a.mender") == "datastore/artifacts/a.mender"
    assert safe_member_name(MANIFEST_NAME) == MANIFEST_NAME


def crafted(
    tmp_path: Path,
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    listed: dict[str, Any] | None = None,
    **manifest_extra: Any,
) -> Path:
    """A hand-made archive: `members` as given, then a backup.json listing `listed`."""
    path = tmp_path / "crafted.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        body = json.dumps({**manifest(**manifest_extra), "members": listed or {}}).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return path


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


DB = "database/orchestrator.sqlite3"
DB_SHA = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"  # sha256("hello")


def extract(tmp_path: Path, path: Path, free: Callable[[], int] = PLENTY) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive_extract(path, dest, free_bytes=free)


def test_a_crafted_archive_that_is_right_extracts(tmp_path: Path) -> None:
    path = crafted(tmp_path, [file_member(DB, b"hello")], {DB: {"sha256": DB_SHA, "size": 5}})
    extract(tmp_path, path)
    assert (tmp_path / "dest" / DB).read_bytes() == b"hello"


def test_a_member_whose_sha256_differs_is_refused(tmp_path: Path) -> None:
    path = crafted(tmp_path, [file_member(DB, b"HELLO")], {DB: {"sha256": DB_SHA, "size": 5}})
    with pytest.raises(ArchiveError, match="sha256 mismatch") as caught:
        extract(tmp_path, path)
    assert caught.value.member == DB


def test_a_member_whose_size_differs_is_refused(tmp_path: Path) -> None:
    path = crafted(tmp_path, [file_member(DB, b"hello")], {DB: {"sha256": DB_SHA, "size": 6}})
    with pytest.raises(ArchiveError, match="sha256 mismatch or changed"):
        extract(tmp_path, path)


def test_a_member_too_large_for_the_disk_is_refused(tmp_path: Path) -> None:
    path = crafted(tmp_path, [file_member(DB, b"hello")], {DB: {"sha256": DB_SHA, "size": 5}})
    with pytest.raises(ArchiveError, match="do not fit in the free space"):
        extract(tmp_path, path, free=lambda: 4)


def test_an_unlisted_or_missing_member_is_refused(tmp_path: Path) -> None:
    extra = file_member("datastore/extra", b"x")
    path = crafted(tmp_path, [file_member(DB, b"hello"), extra], {DB: {"sha256": DB_SHA, "size": 5}})
    with pytest.raises(ArchiveError, match=r"not listed in backup\.json"):
        extract(tmp_path, path)
    (tmp_path / "2").mkdir()
    listed = {DB: {"sha256": DB_SHA, "size": 5}, "datastore/gone": {"sha256": DB_SHA, "size": 5}}
    path = crafted(tmp_path / "2", [file_member(DB, b"hello")], listed)
    with pytest.raises(ArchiveError, match="missing from the archive"):
        extract(tmp_path / "2", path)


def test_an_archive_without_its_database_is_refused(tmp_path: Path) -> None:
    path = crafted(
        tmp_path, [file_member("datastore/x", b"hello")], {"datastore/x": {"sha256": DB_SHA, "size": 5}}
    )
    with pytest.raises(ArchiveError, match="the database member is missing"):
        extract(tmp_path, path)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_symlinks_devices_and_fifos_are_refused(tmp_path: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("datastore/odd")
    info.type = kind
    info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    path = crafted(tmp_path, [(info, None)])
    with pytest.raises(ArchiveError, match="symlinks and devices are refused"):
        extract(tmp_path, path)


def test_a_hard_link_must_point_at_an_earlier_file_of_the_archive(tmp_path: Path) -> None:
    outside = tarfile.TarInfo("datastore/l")
    outside.type, outside.linkname = tarfile.LNKTYPE, "../../etc/passwd"
    with pytest.raises(ArchiveError, match="hard link outside the archive"):
        extract(tmp_path, crafted(tmp_path, [(outside, None)]))
    (tmp_path / "2").mkdir()
    forward = tarfile.TarInfo("datastore/l")
    forward.type, forward.linkname = tarfile.LNKTYPE, DB
    path = crafted(tmp_path / "2", [(forward, None), file_member(DB, b"hello")])
    with pytest.raises(ArchiveError, match="not an earlier regular file"):
        extract(tmp_path / "2", path)


def test_a_member_twice_is_refused(tmp_path: Path) -> None:
    path = crafted(tmp_path, [file_member(DB, b"hello"), file_member(DB, b"hello")])
    with pytest.raises(ArchiveError, match="appears twice"):
        extract(tmp_path, path)


def test_set_id_bits_are_dropped(tmp_path: Path) -> None:
    info, data = file_member(DB, b"hello")
    info.mode = 0o6777
    path = crafted(tmp_path, [(info, data)], {DB: {"sha256": DB_SHA, "size": 5}})
    extract(tmp_path, path)
    assert (tmp_path / "dest" / DB).stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_another_format_version_is_refused(tmp_path: Path, version: object) -> None:
    path = crafted(tmp_path, [file_member(DB, b"hello")], {DB: {"sha256": DB_SHA, "size": 5}}, format=version)
    with pytest.raises(ArchiveError, match=f"this code reads format {FORMAT_VERSION}"):
        extract(tmp_path, path)


def test_a_manifest_without_its_sections_is_refused(tmp_path: Path) -> None:
    path = crafted(tmp_path, [file_member(DB, b"hello")], {DB: {"sha256": DB_SHA, "size": 5}}, migrations=[])
    with pytest.raises(ArchiveError, match="`migrations` missing or not an object"):
        extract(tmp_path, path)


def test_an_archive_without_a_manifest_or_not_a_tar_gz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info, data = file_member(DB, b"hello")
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ArchiveError, match="missing: not an orchestrator backup"):
        extract(tmp_path, path)
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip at all")
    (tmp_path / "2").mkdir()
    with pytest.raises(ArchiveError, match=r"not a readable tar\.gz"):
        extract(tmp_path / "2", tmp_path / "junk.tar.gz")
