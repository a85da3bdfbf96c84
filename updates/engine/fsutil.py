"""Durability helpers shared by the engine's writers (work dirs, extraction, the store)."""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (new, renamed, removed names) survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return syncfs


_SYNCFS = _load_syncfs() if sys.platform.startswith("linux") else None


def sync_tree(root: Path, paths: Sequence[Path]) -> None:
    """Make the files and directories `paths` (all inside `root`) survive a power cut.

    One `syncfs` on root's file system replaces a flush per path: a File-API tree is ten small
    files and four directories, and those fourteen flushes were most of the machine's own time
    per component (bench/orchestration_overhead.py). The price: syncfs also flushes whatever else
    is dirty on that file system (the data store's), which is ours on an appliance. Where syncfs
    is missing, each path is fsynced.
    """
    if _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----- the shared data store of a production install (deploy/install.sh) -------------------------
# There the data store belongs to root:mender-orchestrator with setgid folders (2770): the worker
# runs as root, the web server as the service user, and both must read what the other made. A
# file that is private elsewhere (0600) is then readable by the group too; a fresh checkout (no
# setgid) keeps 0600, so the single-user setup is not loosened.


def group_shared(directory: Path) -> bool:
    """Whether `directory` is a setgid folder of the shared layout (False when it is missing)."""
    try:
        return bool(directory.stat().st_mode & stat.S_ISGID)
    except OSError:
        return False


def private_file_mode(directory: Path) -> int:
    """The mode of a secret file (a key) created in `directory`: 0640 shared, else 0600."""
    return 0o640 if group_shared(directory) else 0o600


def private_dir_mode(parent: Path) -> int:
    """The mode of a private folder created in `parent`: 0770 shared (setgid comes from the
    parent; asking for it would be refused under the web unit's RestrictSUIDSGID), else 0700."""
    return 0o770 if group_shared(parent) else 0o700


def shared_rw_mode(directory: Path) -> int:
    """The mode of a file every process opens for writing (a lock file): 0660 shared, else 0600."""
    return 0o660 if group_shared(directory) else 0o600


def database_files_protect(paths: Sequence[Path]) -> None:
    """The database files readable by their owner (and the service group in a shared folder)
    only: 0600, or 0660 shared. SQLite creates them 0644 less the umask, which lets every local
    user read the users' password hashes and the token hashes under a usual umask 022."""
    for path in paths:
        try:
            st = path.stat()
            wanted = shared_rw_mode(path.parent)
            if stat.S_IMODE(st.st_mode) != wanted and st.st_uid == os.geteuid():
                path.chmod(wanted)
        except OSError:
            continue


def share_with_group(paths: Sequence[Path]) -> None:
    """Make the group read and write `paths` in a shared folder (its owner alone may chmod;
    missing paths and other owners' files are left as they are)."""
    for path in paths:
        try:
            st = path.stat()
            if group_shared(path.parent) and st.st_mode & 0o060 != 0o060 and st.st_uid == os.geteuid():
                path.chmod(stat.S_IMODE(st.st_mode) | 0o060)
        except OSError:
            continue
