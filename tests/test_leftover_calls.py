"""A dead runner's leftover interface calls are found and stopped, also a child that
double-forked and left the work directory (issue 12): by the session recorded at start."""

from __future__ import annotations

import os
import time
from pathlib import Path

from updates.engine.interface import InterfaceRunner
from updates.engine.sessions import SESSION_LOG, start_time
from updates.liveness import leftover_calls, stop_leftover_calls

# The interface leaves a grandchild in / (double fork, `cd /`), then exits: nothing of the call
# is left in the work directory.
DETACHING = """#!/bin/sh
( cd / && exec sleep 300 ) </dev/null >/dev/null 2>&1 &
echo $! > "$2/grandchild"
"""


def the_interface(tmp_path: Path) -> InterfaceRunner:
    iface = tmp_path / "share" / "interfaces" / "v1" / "detaching"
    iface.parent.mkdir(parents=True)
    iface.write_text(DETACHING)
    iface.chmod(0o755)
    return InterfaceRunner(data_dir=tmp_path / "share", timeout=30)


def leave_a_grandchild(runner: InterfaceRunner, work: Path) -> int:
    """Run the interface once in a component tree of `work`; the PID it left behind in /."""
    tree = work / "board.B1"
    tree.mkdir(parents=True)
    argv = runner.argv(
        interface="detaching",
        state="ArtifactInstall",
        workdir=tree,
        component_type="board",
        component_id=None,
        args=[],
    )
    assert runner.call(argv, cwd=tree).ok
    grandchild = int((tree / "grandchild").read_text())
    wait_until_in_root(grandchild)
    return grandchild


def wait_until_in_root(pid: int) -> None:
    """The backgrounded subshell may not have run its `cd /` yet when the interface returns."""
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/cwd").readlink() != Path("/"):
        assert time.monotonic() < deadline, "the grandchild never left the work directory"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    return start_time(pid) is not None


def test_it_stops_a_leftover_that_left_the_work_dir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    grandchild = leave_a_grandchild(the_interface(tmp_path).with_session_log(work / SESSION_LOG), work)
    try:
        assert alive(grandchild)
        assert leftover_calls(work) == [grandchild]
        assert stop_leftover_calls(work, grace=2) == [grandchild]
        deadline = time.monotonic() + 5
        while alive(grandchild):
            assert time.monotonic() < deadline, "the leftover survived"
            time.sleep(0.02)
    finally:
        if alive(grandchild):
            os.kill(grandchild, 9)


def test_without_the_session_log_only_the_work_dir_counts(tmp_path: Path) -> None:
    work = tmp_path / "work"
    # No log: the leftover is invisible, which was the gap.
    grandchild = leave_a_grandchild(the_interface(tmp_path), work)
    try:
        assert leftover_calls(work) == []
    finally:
        os.kill(grandchild, 9)


def test_a_recorded_session_whose_number_was_reused_is_left_alone(tmp_path: Path) -> None:
    # Our own PID with a made-up start time: a live process that is not the recorded leader.
    (tmp_path / SESSION_LOG).write_text(f"{os.getpid()} 1\n")
    assert leftover_calls(tmp_path) == []
