"""`approve`, `reject`: a person's decision at an approval gate of `policy.yaml`; `refresh` and
`reconcile`: the drift watch (docs/policy.md).

Thin edge: parse arguments, call one service, print; `approve`/`reject` exit 0 when the
decision was recorded, 2 when there is nothing waiting to decide (docs/cli.md §8).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.utils import timezone

from updates import selectors, services
from updates.actors import actor_of_command_line
from updates.engine.errors import ExitCode, OrchestratorError
from updates.selectors.system import Drift
from updates.services.drift import system_refresh
from updates.services.gates import deployment_gate_decide

from .system import _echo, _guarded, _refused


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
        f"{then} (`mender-orchestrator status` shows it)",
        flush=True,
    )
    return ExitCode.DONE


def register_drift(sub: Any) -> None:
    refresh = sub.add_parser("refresh", help="ask every component now what it runs; shows drift")
    refresh.add_argument("--json", action="store_true", help="print the drift as JSON")
    refresh.set_defaults(handler=cmd_refresh)
    reconcile = sub.add_parser(
        "reconcile", help="install the active manifest again: only drifted components change"
    )
    reconcile.set_defaults(handler=cmd_reconcile)


def cmd_refresh(args: argparse.Namespace) -> int:
    try:
        asked = system_refresh(actor=actor_of_command_line())
    except OrchestratorError as exc:
        return _refused(exc)
    drift = selectors.drift_list()
    if args.json:
        print(json.dumps({"components": asked, "drift": drift}, indent=2, default=str))
        return ExitCode.DONE
    print(f"asked {asked} components", flush=True)
    print_drift(drift)
    return ExitCode.DONE


def print_drift(drift: list[Drift]) -> None:
    if not drift:
        print("no drift: every component runs what the last deployment left on it")
        return
    print("drift (changed outside the orchestrator; `reconcile` installs the active manifest again):")
    for d in drift:
        since = f" since {timezone.localtime(d['since']):%Y-%m-%d %H:%M:%S}" if d["since"] else ""
        print(f"  {d['component']:<24} runs {d['actual']}, expected {d['expected']}{since}")


def cmd_reconcile(args: argparse.Namespace) -> int:
    return _guarded(lambda: services.deployment_install_reconcile(actor=actor_of_command_line(), echo=_echo))
