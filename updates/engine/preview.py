"""Dry-run answers for `plan`: what each interface says it will need.

Queries have no side effects, so `plan` may ask them before installing; the real run asks
again at the protocol's moment (after `ArtifactInstall`), and that answer is the one used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from updates.engine.interface import InterfaceError, InterfaceRunner, parse_query_answer
from updates.engine.machine import current_files, header_files
from updates.engine.planner import Target
from updates.engine.workdir import prepare_tree, remove_tree


def preview_answers(runner: InterfaceRunner, target: Target, scratch: Path) -> dict[str, str]:
    tree = scratch / target.key
    prepare_tree(tree, header=header_files(target), current=current_files(target))
    try:
        return {
            "reboot": _ask(runner, target, tree, "NeedsArtifactReboot"),
            "rollback": _ask(runner, target, tree, "SupportsRollback"),
        }
    finally:
        remove_tree(tree)


def _ask(runner: InterfaceRunner, target: Target, tree: Path, state: str) -> str:
    component = target.component
    argv = runner.argv(
        interface=component.interface,
        state=state,
        workdir=tree,
        component_type=component.component_type,
        component_id=component.component_id,
        args=component.interface_args,
    )
    result = runner.call(argv, cwd=tree)
    if not result.ok:
        return f"error (exit {result.exit_code})"
    try:
        return parse_query_answer(state, result.stdout, interface=component.interface)
    except InterfaceError as exc:
        return f"error ({exc})"


def rollback_support(runner: InterfaceRunner, targets: Sequence[Target], scratch: Path) -> dict[str, bool]:
    """Each installing component's `SupportsRollback` answer, asked ahead (queries have no side
    effects): the constraint check needs to know who stays new on the rollback path."""
    return {t.key: preview_answers(runner, t, scratch)["rollback"] == "Yes" for t in targets}
