"""`approve`, `reject`: a person's decision at an approval gate of `policy.yaml` (docs/policy.md).

Thin edge: parse arguments, call one service, print; exit 0 when the decision was recorded, 2
when there is nothing waiting to decide (docs/cli.md §8).
"""

from __future__ import annotations

import argparse
from typing import Any

from updates.actors import actor_of_command_line
from updates.engine.errors import ExitCode, OrchestratorError
from updates.services.gates import deployment_gate_decide

from .system import _refused


def register(sub: Any) -> None:
    for name, text in (
        ("approve", "approve the deployment waiting at an approval gate: it goes on"),
        ("reject", "reject the deployment waiting at an approval gate: the system is rolled back"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument(
            "id", nargs="?", type=int, metavar="ID", help="the deployment (default: the one in progress)"
        )
        parser.add_argument("--reason", default="", help="why (recorded in the audit journal)")
        parser.set_defaults(handler=cmd_decide, approve=name == "approve")


def cmd_decide(args: argparse.Namespace) -> int:
    try:
        deployment = deployment_gate_decide(
            deployment_id=args.id, approve=args.approve, actor=actor_of_command_line(), reason=args.reason
        )
    except OrchestratorError as exc:
        return _refused(exc)
    then = "it goes on" if args.approve else "the system is rolled back"
    print(
        f"deployment {deployment.pk}: {deployment.gate_decision} at the gate before {deployment.gate}; "
        f"{then} (`orchestrator status` shows it)",
        flush=True,
    )
    return ExitCode.DONE
