"""Who did something: recorded on every bundle and deployment row, in the audit journal (issue 11)
and shown in the audit.

An actor is a user (a browser session), an API token, a webhook event, the command line (the OS
user, and whether Mender's update module called us) or the appliance itself (a worker continuing
a deployment, retention). The journal stores `Actor.as_json()`.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ActorKind = Literal["user", "token", "webhook", "cli", "system"]
ACTOR_KINDS: tuple[ActorKind, ...] = ("user", "token", "webhook", "cli", "system")
# Mender's update module for manifests (docs/protocol.md §6.1) runs us from
# /usr/share/mender/modules/v3/mender-orchestrator-manifest; this is its file name.
UPDATE_MODULE = "mender-orchestrator-manifest"
# Set by a caller that knows better than our process tree (e.g. a wrapper script): cli | update-module.
CALLER_ENV = "MENDER_ORCHESTRATOR_CALLER"


@dataclass(frozen=True)
class Actor:
    """`user` (a browser session: the username), `token` ("<user>/<token name>"), `webhook`
    (the event id of a Mender or CI hook), `cli` (the local command line: the OS user, `via`
    "cli" or "update-module") or `system` (the appliance itself)."""

    kind: ActorKind
    name: str
    via: str = ""

    @property
    def label(self) -> str:
        """How pages, the CLI and logs name it: "user alice", "token alice/ci", "webhook evt-1",
        "cli root", "cli root (update-module)", "system". The one formatting of an actor."""
        if self.kind == "system":
            return "system"
        via = f" ({self.via})" if self.via and self.via != self.kind else ""
        return f"{self.kind} {self.name}{via}"

    @property
    def from_command_line(self) -> bool:
        """The command line runs what it starts in its own process (no worker message)."""
        return self.kind == "cli"

    def as_json(self) -> dict[str, str]:
        data = {"kind": self.kind, "name": self.name}
        if self.via:
            data["via"] = self.via
        return data

    @classmethod
    def from_json(cls, data: object) -> Actor:
        """The actor stored by `as_json` (rows, journal entries); SYSTEM for an entry that
        predates actors on every entry (the journal kept `null` for the appliance's own)."""
        if not isinstance(data, dict) or data.get("kind") not in ACTOR_KINDS:
            return SYSTEM
        return cls(kind=data["kind"], name=str(data.get("name", "")), via=str(data.get("via", "")))


SYSTEM = Actor("system", "orchestrator")


def actor_of_command_line() -> Actor:
    """The OS user running this process, and whether Mender's update module started it."""
    return Actor(kind="cli", name=_os_user(), via=_caller())


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _caller() -> str:
    declared = os.environ.get(CALLER_ENV, "")
    if declared in ("cli", "update-module"):
        return declared
    return "update-module" if _started_by_update_module() else "cli"


def _started_by_update_module(levels: int = 4) -> bool:
    """Look a few processes up: the module is a script, so its path is in its shell's argv
    (`/bin/sh …/mender-orchestrator-manifest ArtifactInstall <dir>`); the Mender client sets
    no variable we could read instead."""
    pid = os.getppid()
    for _ in range(levels):
        if pid <= 1:
            return False
        argv = _cmdline(pid)
        if any(Path(arg).name == UPDATE_MODULE for arg in argv[:2]):
            return True
        pid = _parent(pid)
    return False


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1])
