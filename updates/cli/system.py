"""`install`, `resume`, `rollback`, `plan`, `status`, `history`, `show-provides`, `show-inventory`.

Thin edge: parse arguments, call one service or selector, print, map the outcome to the exit
codes of DESIGN.md §4.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from updates import selectors, services
from updates.engine.machine import STOPPABLE
from updates.engine.manifest import InputError
from updates.engine.planner import SelectionError
from updates.engine.transitions import ConstraintViolation, TooManyTypes
from updates.models import Deployment
from updates.services import bundles
from updates.services.constraints import ForceWithoutReason, forced_by

from .bundle import print_bundle

EXIT = {"succeeded": 0, "stopped": 0, "reboot_required": 4, "rolled_back": 1, "inconsistent": 1}


def register(sub: Any) -> None:
    install = sub.add_parser(
        "install",
        help="validate, plan and apply a manifest, a bundle file (.tar/.tar.gz/.mender) or a bundle id",
    )
    install.add_argument("manifest", nargs="?", type=Path, metavar="MANIFEST|BUNDLE|ID")
    install.add_argument("--previous", action="store_true", help="re-apply the previous manifest")
    install.add_argument("-t", "--topology-components", type=Path)
    install.add_argument(
        "--force", action="store_true", help="run even if the plan violates the declared constraints"
    )
    install.add_argument(
        "--reason", default="", help="why --force is needed (recorded; required with --force)"
    )
    _run_options(install)
    install.set_defaults(handler=cmd_install)

    for name, handler, text in (
        ("resume", cmd_resume, "continue a stopped or interrupted deployment"),
        ("rollback", cmd_rollback, "roll back the deployment in progress"),
    ):
        parser = sub.add_parser(name, help=text)
        _run_options(parser)
        parser.set_defaults(handler=handler)

    plan = sub.add_parser("plan", help="dry run: what would change")
    plan.add_argument("manifest", type=Path)
    plan.add_argument("-t", "--topology-components", type=Path)
    plan.add_argument("--json", action="store_true")
    plan.add_argument(
        "--suggest-order",
        action="store_true",
        help="print update_strategy.order values that satisfy the declared constraints",
    )
    plan.set_defaults(handler=cmd_plan)

    for name, handler in (("status", cmd_status), ("history", cmd_history)):
        parser = sub.add_parser(name, help=f"show {name}")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(handler=handler)
    sub.add_parser("show-provides", help="provides of every component").set_defaults(
        handler=cmd_show_provides
    )
    sub.add_parser("show-inventory", help="inventory key=value lines").set_defaults(
        handler=cmd_show_inventory
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stop-before", action="append", default=[], choices=STOPPABLE, metavar="STATE")
    parser.add_argument("--exit-on-reboot", action="store_true")


def _echo(line: str) -> None:
    print(line, flush=True)


def _err(message: str) -> None:
    print(f"mender-orchestrator: {message}", file=sys.stderr, flush=True)


def _guarded(fn: Any, *, rolling_back: bool = False) -> int:
    """Map the services' expected refusals to exit codes; nothing was touched in any of them."""
    try:
        deployment: Deployment = fn()
    except ConstraintViolation as exc:
        _err(f"the plan violates the declared constraints, nothing was changed:\n{exc}")
        _err("run `install --force --reason TEXT` to run it anyway (recorded with your name and reason)")
        return 2
    except (InputError, SelectionError) as exc:
        _err(f"invalid input, nothing was changed:\n{exc}")
        return 2
    except services.NothingInProgress as exc:
        _err(str(exc))
        return 2
    except services.BusyError as exc:
        _err(str(exc))
        return 3
    _print_summary(deployment)
    return _exit_code(deployment, rolling_back=rolling_back)


def _exit_code(deployment: Deployment, *, rolling_back: bool) -> int:
    # A stop (--stop-before) inside a *failed* deployment is a failure for install/resume:
    # Mender's update module reads 0 as "this state succeeded" and would clean up instead of
    # calling ArtifactRollback. For `rollback` the stop after rolling back is that command's
    # success (the module's `rollback --stop-before Cleanup` expects 0).
    failed = deployment.status == Deployment.Status.STOPPED and bool(deployment.position.get("failed"))
    if failed and not rolling_back:
        return 1
    return EXIT.get(deployment.status, 1)


def cmd_install(args: argparse.Namespace) -> int:
    if bool(args.manifest) == bool(args.previous):
        _err("install needs a manifest path or --previous (not both)")
        return 2
    if args.reason and not args.force:
        _err("--reason goes with --force (it records why the constraints were overridden)")
        return 2
    try:
        forced = forced_by(force=args.force, reason=args.reason, actor=_os_user())
    except ForceWithoutReason as exc:
        _err(f"invalid input, nothing was changed:\n{exc}")
        return 2
    opts = {
        "stop_before": args.stop_before,
        "exit_on_reboot": args.exit_on_reboot,
        "echo": _echo,
        "forced": forced,
    }
    if args.previous:
        return _guarded(lambda: services.deployment_install_previous(**opts))
    manifest = _bundle_manifest(args.manifest)
    if manifest is None:
        return 2
    args.manifest = manifest
    return _guarded(
        lambda: services.deployment_install(
            manifest_path=args.manifest, topology_components=args.topology_components, **opts
        )
    )


def _os_user() -> str:
    """The CLI's actor: the operating-system user running it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid still names someone
        return f"uid {os.getuid()}"


BUNDLE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".mender")


def _bundle_manifest(target: Path) -> Path | None:
    """A manifest path as given; a bundle file is ingested first; a number names a stored bundle.
    Bundles install from their store directory, never from the file given (it can still change)."""
    try:
        if target.name.endswith(BUNDLE_SUFFIXES) and target.is_file():
            bundle = bundles.bundle_add_file(path=target)
            print_bundle(selectors.bundle_report(bundle))
            return bundles.bundle_manifest_path(bundle_id=bundle.pk)
        if str(target).isdigit() and not target.exists():
            return bundles.bundle_manifest_path(bundle_id=int(str(target)))
    except (bundles.BundleNotFound, InputError) as exc:
        _err(f"invalid input, nothing was changed:\n{exc}")
        return None
    return target


def cmd_resume(args: argparse.Namespace) -> int:
    return _guarded(
        lambda: services.deployment_resume(
            stop_before=args.stop_before, exit_on_reboot=args.exit_on_reboot, echo=_echo
        )
    )


def cmd_rollback(args: argparse.Namespace) -> int:
    return _guarded(
        lambda: services.deployment_rollback(
            stop_before=args.stop_before, exit_on_reboot=args.exit_on_reboot, echo=_echo
        ),
        rolling_back=True,
    )


def cmd_plan(args: argparse.Namespace) -> int:
    if args.suggest_order:
        return _suggest_order(args)
    try:
        report = services.plan_preview(
            manifest_path=args.manifest, topology_components=args.topology_components
        )
    except (InputError, SelectionError) as exc:
        _err(f"the manifest cannot be applied:\n{exc}")
        return 2
    verdict = report["constraints"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_plan(report)
        if verdict:
            print_path(verdict)
    return 2 if verdict and not verdict["ok"] else 0


def _print_plan(report: dict[str, Any]) -> None:
    print(f"manifest {report['manifest']} ({report['form']} form)")
    for order, keys in report["groups"]:
        print(f"order group {order}: {', '.join(keys)}")
    print(f"{'component':<24} {'action':<8} {'current':<22} {'target':<22} {'reboot':<10} rollback")
    for c in report["components"]:
        print(
            f"{c['key']:<24} {c['action']:<8} {c['current']:<22} {c['target']:<22} "
            f"{c.get('reboot', '-'):<10} {c.get('rollback', '-')}"
        )


def print_path(verdict: dict[str, Any]) -> None:
    """The states the deployment can pass through (steps x components), first violation marked."""
    print()
    print(f"constraints: {verdict['file']}")
    keys = list(verdict["end_state"]["versions"])
    back = {c["key"]: c["rolls_back"] for c in verdict["components"]}
    rows = [["step", *keys]] + [
        [step["step"], *(_cell(step, k, back[k]) for k in keys)] for step in verdict["path"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    marks = [""] + [_mark(step, verdict["first_violation"]) for step in verdict["path"]]
    for row, mark in zip(rows, marks, strict=True):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + mark)
    print("(a -> b: moves during the step, every order of the moves is checked; a or b: not rolled back)")
    end = verdict["end_state"]
    if end["system_version"]:
        print(f"end state: system {end['system_version']} ({end['row']}, line {end['line']})")
    if verdict["ok"]:
        print("verdict: ok, no state on the way forward or on any rollback path is forbidden")
        return
    print("verdict: REFUSED")
    for reason in verdict["reasons"]:
        print(f"  {reason}")


def _mark(step: dict[str, Any], first: dict[str, Any] | None) -> str:
    if first is None or step["violation"] != first:
        return ""
    return f"   <-- FORBIDDEN: {first['combination']} ({first['row']}, line {first['line']})"


def _cell(step: dict[str, Any], key: str, rolls_back: bool) -> str:
    versions = step["versions"][key]
    if len(versions) == 1:
        return str(versions[0])
    old, new = versions
    if step["phase"] != "rollback":
        return f"{old} -> {new}"
    # Without rollback support a component stays where the failure found it: either version.
    return f"{new} -> {old}" if rolls_back else f"{old} or {new}"


def _suggest_order(args: argparse.Namespace) -> int:
    try:
        suggestion = services.plan_suggest_order(
            manifest_path=args.manifest, topology_components=args.topology_components
        )
    except (InputError, SelectionError, TooManyTypes) as exc:
        _err(f"cannot suggest an order:\n{exc}")
        return 2
    if not suggestion.types:
        print("nothing changes: no order is needed")
        return 0
    if not suggestion.orders:
        print(f"no order satisfies them: every grouping of {', '.join(suggestion.types)} passes through")
        print("a forbidden combination; the conflicting rows:")
        for row in suggestion.conflicts:
            print(f"  {row.where}, line {row.line}: {row.combination} (acceptable: false)")
        return 2
    best, *others = suggestion.orders
    print("update_strategy.order values that satisfy the declared constraints (transition_states):")
    for ctype, order in best.items():
        print(f"  {ctype}: {order}")
    for other in others[:4]:
        print("also satisfying: " + ", ".join(f"{t}: {o}" for t, o in other.items()))
    if suggestion.end_row is None:
        print("note: the end state matches no end_states row; no order changes that (install refuses it)")
        return 2
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    report = selectors.status_report()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    pointers = report["manifests"]
    _print_system(report["system"])
    print(f"active manifest:   {pointers['active'] or '-'}")
    print(f"previous manifest: {pointers['previous'] or '-'}")
    for c in report["components"]:
        print(f"{c['key']:<24} {c['version']:<24} (as of {c['refreshed_at']})")
    running = report["in_progress"]
    print(
        f"in progress: deployment {running['id']} ({running['status']}: {running['reason']})"
        if running
        else "in progress: none"
    )
    return 0


def _print_system(system: dict[str, Any]) -> None:
    if system["state"] == "working":
        print(f"{system['message']} ({system['row']}, {system['constraints_file']}:{system['line']})")
    elif system["state"] != "undeclared":
        print(f"system: {system['message']}")


def cmd_history(args: argparse.Namespace) -> int:
    report = selectors.history_report()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    for d in report:
        print(f"#{d['id']} {d['created_at']} {d['manifest']:<24} {d['status']:<15} {d['reason']}")
        if d["forced_by"]:
            print(f"    forced past the declared constraints by {d['forced_by']}: {d['forced_reason']}")
        for s in d["steps"]:
            result = s["answer"] or ("ok" if s["ok"] else f"FAILED {s['error']}")
            print(f"    {s['started_at']} {s['component']:<24} {s['state']:<30} {result}")
    return 0


def cmd_show_provides(args: argparse.Namespace) -> int:
    return _print_lines(services.provides_lines)


def cmd_show_inventory(args: argparse.Namespace) -> int:
    return _print_lines(services.inventory_lines)


def _print_lines(source: Callable[[], list[str]]) -> int:
    try:
        lines = source()
    except (InputError, SelectionError) as exc:
        _err(str(exc))
        return 2
    print("\n".join(lines))
    return 0


def _print_summary(deployment: Deployment) -> None:
    print()
    print(f"deployment {deployment.pk}: {deployment.status} — {deployment.reason}")
    steps = list(selectors.deployment_steps(deployment))
    keys = [c["key"] for c in deployment.plan.get("components", [])]
    print(f"{'component':<24} {'action':<8} {'from':<22} {'to':<22} last state")
    for c in deployment.plan.get("components", []):
        last = next((s for s in reversed(steps) if s.component == c["key"]), None)
        state = f"{last.state} {'ok' if last.ok else 'FAILED'}" if last else "-"
        print(f"{c['key']:<24} {c['action']:<8} {c['current']:<22} {c['target']:<22} {state}")
    if not keys:
        print("(no components planned)")
