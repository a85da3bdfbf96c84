"""Who runs a deployment: an owner token that survives in the row and can be checked later.

The token is `<boot id>:<pid>:<process start time>`, so a later process can tell a live owner
from one that died (killed, power cut, host reboot) even if the PID was reused since.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from updates.engine.sessions import SESSION_LOG, session_members, start_time

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown-boot"


def owner_token() -> str:
    pid = os.getpid()
    return f"{_boot_id()}:{pid}:{start_time(pid)}"


def owner_alive(token: str) -> bool:
    try:
        boot, pid, start = token.split(":")
    except ValueError:
        return False
    return boot == _boot_id() and start_time(int(pid)) == start


def owner_pid(token: str) -> str:
    """The PID in an owner token, for messages ("?" when the token is not one)."""
    parts = token.split(":")
    return parts[1] if len(parts) == 3 else "?"


# ----- leftovers of a dead runner ----------------------------------------------------------------
# Interface calls run in their own session (so a timeout can kill a whole group); the flip side
# is that they outlive an orchestrator that is SIGKILLed or crashes. The one who takes over a
# dead runner's deployment ends them first, as a power cut would have: a leftover must never
# run next to the resumed flow (e.g. an old ArtifactInstall finishing after ArtifactRollback).
# Every call of a deployment runs with its cwd inside the deployment's work dir, and in a session
# recorded in the work dir's session log when it started: that is how they are found, also a
# child that double-forked and left the work dir (`updates.engine.sessions`).

LEFTOVER_GRACE = 5.0


def leftover_calls(work_dir: Path) -> list[int]:
    """PIDs of live processes whose working directory is inside `work_dir`, or that belong to a
    session or process group recorded in its session log."""
    if not str(work_dir).strip():
        return []  # never "the current directory"
    found = set(session_members(Path(work_dir) / SESSION_LOG))
    root = os.path.realpath(work_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
        except OSError:  # gone, a zombie, or not ours to inspect
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found.add(int(entry.name))
    return sorted(found)


def stop_leftover_calls(work_dir: Path, *, grace: float = LEFTOVER_GRACE) -> list[int]:
    """End the leftover calls in `work_dir`: SIGTERM to their process groups (the interface may
    clean up), SIGKILL to whatever is left after `grace`. Returns the PIDs found."""
    pids = leftover_calls(work_dir)
    _signal_groups(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while leftover_calls(work_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_groups(leftover_calls(work_dir), signal.SIGKILL)
    return pids


def _signal_groups(pids: list[int], sig: signal.Signals) -> None:
    own = os.getpgrp()
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group != own:
                os.killpg(group, sig)
        except OSError:  # already gone
            continue
