"""Who did something: recorded on every bundle and deployment row and shown in the audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorKind = Literal["user", "token", "webhook", "cli"]


@dataclass(frozen=True)
class Actor:
    """`user` (a browser session: the username), `token` ("<user>/<token name>"), `webhook`
    (the event id of a Mender or CI hook) or `cli` (the local command line)."""

    kind: ActorKind
    name: str

    @property
    def label(self) -> str:
        """The `created_by` string of the older rows: "<kind>:<name>", or "cli"."""
        return "cli" if self.kind == "cli" else f"{self.kind}:{self.name}"


CLI_ACTOR = Actor("cli", "cli")
