"""Who runs a deployment: an owner token that survives in the row and can be checked later.

The token is `<boot id>:<pid>:<process start time>`, so a later process can tell a live owner
from one that died (killed, power cut, host reboot) even if the PID was reused since.
"""

from __future__ import annotations

import os
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown-boot"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_token() -> str:
    pid = os.getpid()
    return f"{_boot_id()}:{pid}:{_start_time(pid)}"


def owner_alive(token: str) -> bool:
    try:
        boot, pid, start = token.split(":")
    except ValueError:
        return False
    return boot == _boot_id() and _start_time(int(pid)) == start
