"""Which processes belong to the interface calls of a run, even after they left its work dir.

Every interface call starts its own session (and process group) whose id is the interface's PID.
The runner appends that id, with the leader's start time, to a log in the run's work dir when
the call starts. A child that double-forks and `cd /`s keeps the session and the group, so
whoever takes over a dead runner's deployment can still find it from the log.

Why the start time: a session id cannot be reused while any process still belongs to the
session, but once all are gone a new process may get the same number and start a session of its
own. A live process with the recorded PID but another start time means exactly that.
"""

from __future__ import annotations

import os
from pathlib import Path

SESSION_LOG = ".sessions"


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot); None when it is gone or a zombie."""
    fields = _stat(pid)
    return fields[19] if fields else None


def record_session(log: Path, pid: int) -> None:
    # O_APPEND: calls of one group start in parallel threads; each line is one write.
    line = f"{pid} {start_time(pid) or '-'}\n".encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def session_members(log: Path) -> list[int]:
    """PIDs of live processes in a session or process group recorded in `log`."""
    recorded = _recorded(log)
    if not recorded:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        fields = _stat(int(entry.name))
        if fields and (int(fields[2]) in recorded or int(fields[3]) in recorded):
            found.append(int(entry.name))
    return found


def _recorded(log: Path) -> set[int]:
    """The recorded session ids still taken by our calls (see the module note on reuse)."""
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return set()
    ours = set()
    for line in lines:
        pid, _, started = line.partition(" ")
        if not pid.isdigit():
            continue  # a line cut by a crash
        now = start_time(int(pid))
        if now is None or now == started:  # the leader is gone, or it is still our leader
            ours.add(int(pid))
    return ours


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    # A zombie has exited and only waits to be reaped: it runs nothing any more.
    return None if fields[0] in ("Z", "X") else fields
