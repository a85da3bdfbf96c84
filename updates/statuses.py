"""One wording per status, wherever a person reads it: the pages (the `status_label` template
filter), the command line's tables and history lines. JSON keeps the values themselves
(`rolled_back`), which scripts match on; people read the labels ("Rolled back").

Deployment and bundle statuses share the table: a value means the same thing in both
("rejected": refused before anything was touched, or not accepted). A value missing here
(a status added without its label) reads as itself with its underscores as spaces, never as
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATUS_LABELS: dict[str, str] = {
    # deployments (updates.models.DeploymentStatus)
    "queued": "Queued",
    "running": "Running",
    "waiting_approval": "Waiting for approval",
    "stopped": "Stopped",
    "reboot_required": "Reboot required",
    "succeeded": "Succeeded",
    "rolled_back": "Rolled back",
    "inconsistent": "Inconsistent",
    "rejected": "Rejected",
    # bundles (updates.models.Bundle.Status)
    "ingesting": "Checking",
    "accepted": "Accepted",
    "deleted": "Deleted",
}


def status_label(value: str) -> str:
    """The one human wording of a status value ("rolled_back" -> "Rolled back")."""
    return STATUS_LABELS.get(value) or value.replace("_", " ").capitalize()


def component_ended(outcome: Mapping[str, Any]) -> str:
    """Where one component of a deployment ended, said from where it stands now: "back on
    gateway-v2; gateway-v3 rolled back", never the "gateway-v2 -> gateway-v3" of the plan, which
    reads as if the new version had landed. `outcome`: a `selectors.OutcomeReport` (`key`,
    `outcome`, `from`, `to`, `version`, `uncommitted`, `failed_in`)."""
    what, old, new = str(outcome["outcome"]), str(outcome["from"]), str(outcome["to"])
    failed = f" (failed in {outcome['failed_in']})" if outcome.get("failed_in") else ""
    if what.startswith("skipped"):
        return f"unchanged on {old}"
    for ending, said in _ENDED:
        if what.endswith(ending):
            return said.format(old=old, new=new) + failed
    if outcome.get("uncommitted"):
        return f"on {new} (new, not committed; {old} before)"
    if what in ("installed", "committed"):
        return f"now on {new} ({old} before)"
    return f"{old} → {new}: {what}"  # in progress: not started, downloaded


# The engine's words for how a component's run ended (`Progress.outcome`, which may put
# "failed in STATE, " before them), first match wins: "rollback FAILED" ends in neither of the
# others, "NOT rolled back" must be matched before "rolled back".
_ENDED = (
    ("rollback FAILED", "version unknown: rolling {new} back failed"),
    ("NOT rolled back", "version unknown: {new} was not rolled back"),
    ("rolled back", "back on {old}; {new} rolled back"),
    ("not installed", "still on {old}; {new} not installed"),
)
