"""Durability helpers shared by the engine's writers (work dirs, extraction, the store)."""

from __future__ import annotations

import ctypes
import os
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
