"""The shared data store of a production install (deploy/install.sh): setgid folders owned by
root:mender-orchestrator. There, files other processes must read or open are made for the group
(keys 0640, the store's lock 0660, the SQLite database g+rw); elsewhere they stay private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from updates.engine import hooks
from updates.engine.fsutil import group_shared, private_dir_mode, private_file_mode, share_with_group
from updates.engine.hooks import SecretError
from updates.engine.store import TMP_LOCK, ArtifactStore

SECRET = "ab" * 32


def _shared(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o2770)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_it_tells_a_setgid_folder_from_a_private_one(tmp_path: Path) -> None:
    shared, private = _shared(tmp_path / "shared"), tmp_path
    assert group_shared(shared) and not group_shared(private) and not group_shared(tmp_path / "absent")
    assert (private_file_mode(shared), private_dir_mode(shared)) == (0o640, 0o770)
    assert (private_file_mode(private), private_dir_mode(private)) == (0o600, 0o700)


def test_it_writes_the_hook_secret_group_readable_only_in_the_shared_store(tmp_path: Path) -> None:
    shared = _shared(tmp_path / "shared")
    hooks.secret_write(shared / "hook-secret", SECRET)
    assert _mode(shared / "hook-secret") == 0o640
    assert hooks.secret_read(shared / "hook-secret") == SECRET
    (shared / "hook-secret").chmod(0o660)  # the group may read it, not change it
    with pytest.raises(SecretError, match="mode 0660 lets others read it; it must be 0640"):
        hooks.secret_read(shared / "hook-secret")
    private = tmp_path / "hook-secret"
    hooks.secret_write(private, SECRET)
    private.chmod(0o640)  # outside the shared store the group is nobody's business
    with pytest.raises(SecretError, match="it must be 0600"):
        hooks.secret_read(private)


def test_the_store_lock_is_group_writable_only_in_the_shared_store(tmp_path: Path) -> None:
    for root, mode in [(_shared(tmp_path / "shared"), 0o660), (tmp_path / "private", 0o600)]:
        store = ArtifactStore(root)
        store.writer("a.mender").abort()  # every writer opens the lock; the first creates it
        assert _mode(root / TMP_LOCK) == mode, root


def test_it_makes_the_database_group_writable_only_in_the_shared_store(tmp_path: Path) -> None:
    shared = _shared(tmp_path / "shared")
    for folder in (shared, tmp_path):
        (folder / "db").write_bytes(b"")
        (folder / "db").chmod(0o640)
        share_with_group([folder / "db", folder / "db-wal"])  # a missing -wal is fine
    assert (_mode(shared / "db"), _mode(tmp_path / "db")) == (0o660, 0o640)
