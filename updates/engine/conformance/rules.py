"""The protocol rules `interface-check` holds an interface to, each with a stable id.

The ids are the ones listed under "Rules" in docs/interface-check.md; a maker's CI can key on
them. Each check result names exactly one rule, so a broken interface shows which rule it breaks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    text: str
    destructive: bool = False

    @property
    def doc(self) -> str:
        """Where the rule is explained: a section of docs/interface-check.md."""
        return f"docs/interface-check.md#{self.id.lower()}"


_RULES = (
    Rule("P-EXEC-1", "the interface is an executable regular file with a plain file name"),
    Rule("P-EXIT-1", "a query exits 0 (any other exit code is a failure of the component)"),
    Rule("P-TIMEOUT-1", "every call ends within the interface timeout, with stdin closed"),
    Rule("P-SLOW-1", "a query answers quickly (show-inventory runs every query of every component)"),
    Rule("P-IDEMPOTENT-1", "a query has no side effects: asked twice, it answers the same"),
    Rule("P-IDENTITY-1", "Identity prints exactly one line id=<value>; the value is one safe path segment"),
    Rule("P-IDENTITY-2", "Identity answers the component id the topology expects (--id)"),
    Rule("P-PROVIDES-1", "Provides prints key=value lines, keys without spaces, no key twice"),
    Rule(
        "P-PROVIDES-2",
        "Provides has exactly one of rootfs-image.<interface>.version and rootfs-image.version",
    ),
    Rule("P-PROVIDES-3", "Provides never prints device_type"),
    Rule("P-PROVIDES-4", "Provides values carry no spaces (warning: Mender's inventory is key=value words)"),
    Rule("P-INVENTORY-1", "Inventory prints key=value lines, keys without spaces (a repeated key is a list)"),
    Rule("P-ANSWER-1", "a Yes/No query prints one allowed word or nothing (the default)"),
    Rule("P-UNKNOWN-1", "an unknown state or query prints nothing and exits 0", destructive=True),
    Rule(
        "P-DOWNLOAD-1", "Download reads stream-next and every stream to the end, or none (files tree)", True
    ),
    Rule("P-INSTALL-1", "ArtifactInstall, the reboot states it asks for and ArtifactCommit exit 0", True),
    Rule("P-COMMIT-1", "after install and commit, Provides reports the artifact's version", True),
    Rule(
        "P-ROLLBACK-1",
        "after install and rollback, the states exit 0 and Provides reports the old version",
        True,
    ),
    Rule("P-CLEANUP-1", "Cleanup exits 0, also when run a second time, and changes no version", True),
    Rule("P-RERUN-1", "every state succeeds when re-run after a kill at its start or at its end", True),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
