"""Who runs a deployment: an owner token that survives in the row and can be checked later.

The token is `<host>/<boot id>:<pid>:<process start time>`, so a later process can tell a live
owner from one that died (killed, power cut, host reboot) even if the PID was reused since.
Tokens written before the host part existed (`<boot id>:<pid>:<start>`) are read as this host's.

On this host the process itself is checked. A token of another host (workers on several
machines sharing one database) cannot be checked that way: a different boot id there is not a
previous boot. Such an owner counts as alive while its host beats (the worker heartbeats of
`updates/heartbeat.py`, in the shared data store), and as dead once they went stale.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from updates.engine.sessions import SESSION_LOG, session_members, start_time

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# Test-only: another machine lies outside this one, so the tests simulate one by giving a worker
# process another host id. Never set it in production (two hosts with one id would each take
# the other's processes for their own, and find them dead).
TEST_HOST_ID = "ORCH_TEST_HOST_ID"


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown-boot"


def host_id() -> str:
    """This machine's name in owner tokens and heartbeats."""
    return os.environ.get(TEST_HOST_ID) or socket.gethostname()


def owner_token() -> str:
    pid = os.getpid()
    return f"{host_id()}/{_boot_id()}:{pid}:{start_time(pid)}"


def owner_host(token: str) -> str:
    """The host in a token; this host for the old 3-part tokens."""
    host, slash, _ = token.rpartition("/")
    return host if slash else host_id()


def owner_alive(token: str) -> bool:
    try:
        boot, pid, start = token.rpartition("/")[2].split(":")
    except ValueError:
        return False
    host = owner_host(token)
    if host != host_id():
        from updates.heartbeat import host_alive  # Django side; claims itself stays plain

        return host_alive(host)
    return boot == _boot_id() and start_time(int(pid)) == start


def owner_pid(token: str) -> str:
    """The PID in an owner token, for messages ("?" when the token is not one)."""
    parts = token.rpartition("/")[2].split(":")
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
