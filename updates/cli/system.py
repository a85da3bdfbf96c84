"""`install`, `resume`, `rollback`, `plan`, `status`, `history`, `show-provides`, `show-inventory`.

Thin edge: parse arguments, call one service or selector, print, map the outcome to the exit
codes of docs/cli.md §8.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.utils import timezone

from updates import recovery, selectors, services
from updates.actors import actor_of_command_line
from updates.engine.errors import ExitCode, InvalidInput, NotFound, OrchestratorError, outcome_exit_code
from updates.engine.machine import STOPPABLE
from updates.engine.transitions import ConstraintViolation
from updates.liveness import owner_beats
from updates.models import Deployment
from updates.services import bundles
from updates.services.constraints import ForceWithoutReason, forced_override
from updates.statuses import component_ended, status_label

from .bundle import print_bundle

T = TypeVar("T")


def register(sub: Any) -> None:
    install = sub.add_parser(
        "install",
        help="validate, plan and apply a manifest, a bundle file (.tar/.tar.gz/.mender) or a bundle id",
    )
    install.add_argument("manifest", nargs="?", type=Path, metavar="MANIFEST|BUNDLE|ID", help=TARGET_HELP)
    install.add_argument("--previous", action="store_true", help="re-apply the previous manifest")
    _topology_option(install)
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
        if name == "resume":
            parser.add_argument(
                "--interrupted",
                action="store_true",
                help="only a deployment a dead process left running (or a queued one whose worker "
                "message was lost), with its own options; exit 2 when there is none (run at boot)",
            )

    plan = sub.add_parser(
        "plan",
        help="dry run: what would change (queries only; a bundle file is added to the store first)",
    )
    plan.add_argument("manifest", type=Path, metavar="MANIFEST|BUNDLE|ID", help=TARGET_HELP)
    _topology_option(plan)
    _json_option(plan)
    plan.add_argument(
        "--suggest-order",
        action="store_true",
        help="print update_strategy.order values that satisfy the declared constraints",
    )
    plan.set_defaults(handler=cmd_plan)

    status = sub.add_parser(
        "status", help="what runs now, what is in progress, how the last deployment ended"
    )
    _json_option(status)
    status.set_defaults(handler=cmd_status)
    history = sub.add_parser("history", help="past deployments, one line each; with an ID, its steps")
    history.add_argument("id", nargs="?", type=int, metavar="ID", help="one deployment: every interface call")
    history.add_argument(
        "--limit", type=int, help="how many deployments, newest first (default 20; 50 with --json, as before)"
    )
    _json_option(history)
    history.set_defaults(handler=cmd_history)
    sub.add_parser("show-provides", help="provides of every component").set_defaults(
        handler=cmd_show_provides
    )
    sub.add_parser("show-inventory", help="inventory key=value lines").set_defaults(
        handler=cmd_show_inventory
    )


TARGET_HELP = (
    "a manifest YAML, a bundle file (.tar, .tar.gz, or a manifest artifact .mender: added to the "
    "store first), or the ID of a stored bundle"
)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stop-before",
        action="append",
        default=[],
        choices=STOPPABLE,
        metavar="STATE",
        help=f"stop before this state and wait for `resume` or `rollback`; STATE is one of "
        f"{', '.join(STOPPABLE)} (repeatable)",
    )
    parser.add_argument(
        "--exit-on-reboot",
        action="store_true",
        help="exit 4 instead of rebooting the host when a component needs it; `resume` after the reboot",
    )


def _topology_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t",
        "--topology-components",
        "--manifest-components",  # the old name, as Mender's older tooling passes it
        type=Path,
        metavar="FILE",
        help="the topology's components from this file (wins over the environment and the config)",
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document (stable fields)")


_ECHO_LOCK = threading.Lock()


def _echo(line: str) -> None:
    # Called from the components' threads at once: print() writes the line and its newline
    # separately, so two lines could run into one ("…ok 0.03srtos[R456] Identity…").
    with _ECHO_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _err(message: str) -> None:
    print(f"mender-orchestrator: {message}", file=sys.stderr, flush=True)


def _refused(exc: OrchestratorError) -> int:
    """Print a refusal of the services and return its exit code (docs/cli.md §8, `ExitCode`)."""
    if isinstance(exc, ConstraintViolation):
        _err(f"the plan violates the declared constraints, nothing was changed:\n{exc}")
        _err("run `install --force --reason TEXT` to run it anyway (recorded with your name and reason)")
    elif isinstance(exc, InvalidInput | NotFound):
        _err(f"invalid input, nothing was changed:\n{exc}")
    else:
        _err(str(exc))
    return exc.exit_code


@contextmanager
def _rows_not_warnings() -> Iterator[None]:
    """At the default level the progress rows and the summary already say every failure and the
    rollback: the deployment's WARNING log lines would print each one again between them. Asked
    for (LOG_LEVEL=INFO as the installed units set it, `--log-level info`), the log keeps them."""
    logger = logging.getLogger("orchestrator.deployment")
    if logger.getEffectiveLevel() < logging.WARNING:
        yield
        return
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _guarded(fn: Callable[[], Deployment], *, rolling_back: bool = False) -> int:
    """Run one deployment command; map its expected refusals to exit codes (nothing was
    touched in any of them) and its outcome to the exit code of the outcome."""
    try:
        with owner_beats(), _rows_not_warnings():
            deployment = fn()
    except OrchestratorError as exc:
        return _refused(exc)
    _print_summary(deployment)
    failed = bool(deployment.position.get("failed"))
    return outcome_exit_code(deployment.status, failed=failed, rolling_back=rolling_back)


def cmd_install(args: argparse.Namespace) -> int:
    if bool(args.manifest) == bool(args.previous):
        _err("install needs a manifest path or --previous (not both)")
        return ExitCode.INVALID
    if args.reason and not args.force:
        _err("--reason goes with --force (it records why the constraints were overridden)")
        return ExitCode.INVALID
    try:
        forced = forced_override(force=args.force, reason=args.reason)
    except ForceWithoutReason as exc:
        return _refused(exc)
    opts = {
        "actor": actor_of_command_line(),
        "stop_before": args.stop_before,
        "exit_on_reboot": args.exit_on_reboot,
        "echo": _echo,
        "forced": forced,
    }
    if args.previous:
        return _guarded(lambda: services.deployment_install_previous(**opts))
    return _guarded(
        lambda: services.deployment_install(
            manifest_path=_bundle_manifest(args.manifest),
            topology_components=args.topology_components,
            **opts,
        )
    )


BUNDLE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".mender")


def _bundle_manifest(target: Path, *, quiet: bool = False) -> Path:
    """A manifest path as given; a bundle file is ingested first; a number names a stored bundle.
    Bundles install from their store directory, never from the file given (it can still change).
    Raises NotFound / InvalidInput."""
    if target.name.endswith(BUNDLE_SUFFIXES) and target.is_file():
        bundle = bundles.bundle_add_file(path=target, actor=actor_of_command_line())
        if not quiet:
            print_bundle(selectors.bundle_report(bundle))
        return bundles.bundle_manifest_path(bundle_id=bundle.pk)
    if str(target).isdigit() and not target.exists():
        return bundles.bundle_manifest_path(bundle_id=int(str(target)))
    return target


def cmd_resume(args: argparse.Namespace) -> int:
    if args.interrupted:
        return _resume_interrupted(args)
    return _guarded(
        lambda: services.deployment_resume(
            stop_before=args.stop_before,
            exit_on_reboot=args.exit_on_reboot,
            echo=_echo,
            actor=actor_of_command_line(),
        )
    )


def _resume_interrupted(args: argparse.Namespace) -> int:
    """The boot-time resume: the decision a worker makes at start, run here and now, before the
    worker starts. Stopped and reboot-required deployments are left to their operator or update
    module; a deployment continues with the options it was started with, as after any crash."""
    if args.stop_before or args.exit_on_reboot:
        _err(
            "resume --interrupted continues with the deployment's own options: drop --stop-before/--exit-on-reboot"
        )
        return ExitCode.INVALID
    interrupted = recovery.deployment_interrupted()
    deployment = interrupted.deployment
    if deployment is None or interrupted.action == "none":
        print(f"nothing interrupted: {interrupted.why}", flush=True)
        return ExitCode.INVALID
    _echo(f"{interrupted.why}: {'running' if interrupted.action == 'run' else 'resuming'} it")
    # The recovery a worker would make: it continues the run for whoever asked for it.
    actor = deployment.who
    if interrupted.action == "run":
        return _guarded(
            lambda: services.deployment_execute(deployment_id=deployment.pk, echo=_echo, actor=actor)
        )
    return _guarded(
        lambda: services.deployment_resume(
            stop_before=deployment.stop_before,
            exit_on_reboot=deployment.exit_on_reboot,
            echo=_echo,
            actor=actor,
        )
    )


def cmd_rollback(args: argparse.Namespace) -> int:
    return _guarded(
        lambda: services.deployment_rollback(
            stop_before=args.stop_before,
            exit_on_reboot=args.exit_on_reboot,
            echo=_echo,
            actor=actor_of_command_line(),
        ),
        rolling_back=True,
    )


def cmd_plan(args: argparse.Namespace) -> int:
    if args.suggest_order:
        return _suggest_order(args)
    report = _dry_run(services.plan_preview, args, quiet=args.json, failing="the manifest cannot be applied")
    if isinstance(report, int):
        return report
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


def _dry_run(service: Callable[..., T], args: argparse.Namespace, *, quiet: bool, failing: str) -> T | int:
    """Run a `plan` service on the manifest (or bundle) argument; an exit code if it refused."""
    try:
        return service(
            manifest_path=_bundle_manifest(args.manifest, quiet=quiet),
            topology_components=args.topology_components,
        )
    except InvalidInput as exc:
        _err(f"{failing}:\n{exc}")
        return ExitCode.INVALID
    except OrchestratorError as exc:
        return _refused(exc)


def _suggest_order(args: argparse.Namespace) -> int:
    suggestion = _dry_run(services.plan_suggest_order, args, quiet=True, failing="cannot suggest an order")
    if isinstance(suggestion, int):
        return suggestion
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
    _print_system(report["system"])
    manifests = report["manifests"]
    print(f"active manifest: {manifests['active'] or '(none applied yet)'}", end="")
    print(f" (previous: {manifests['previous']})" if manifests["previous"] else "")
    for c in report["components"]:
        note = " (new, not committed)" if c["uncommitted"] else ""
        note += " (changed since the last deployment)" if c["drifted"] else ""
        print(f"  {c['key']:<24} {c['running']}{note}")
    for d in report["drift"]:
        print(f"drift: {d['component']} runs {d['actual']}, expected {d['expected']} (`reconcile` fixes it)")
    print(_in_progress_line(report["in_progress"]))
    last = report["last"]
    if last:
        print(f"last deployment: {_history_line(last)}")
    elif not manifests["active"] and not report["components"]:
        # Nothing known at all: say where we looked, so a wrong data store is noticed.
        print(
            f"(nothing deployed and no components known in the data store {settings.DATASTORE_DIR};"
            " for another, set MENDER_ORCHESTRATOR_DATASTORE_DIR: docs/environment.md)"
        )
    return 0


def _print_system(system: Mapping[str, Any]) -> None:
    if system["state"] == "working":
        print(f"{system['message']} ({system['row']}, {system['constraints_file']}:{system['line']})")
    elif system["state"] != "undeclared":
        print(f"system: {system['message']}")


def _in_progress_line(running: Mapping[str, Any] | None) -> str:
    if running is None:
        return "in progress: none"
    what = f"in progress: deployment {running['id']} ({running['manifest']})"
    step = running["position"].get("step", "")
    if running["status"] == Deployment.Status.STOPPED and step.startswith("stopped-before-"):
        state = step.removeprefix("stopped-before-")
        return f"{what} stopped before {state}: `resume` to continue, `rollback` to go back"
    if running["status"] == Deployment.Status.REBOOT_REQUIRED:
        return f"{what} waits for the host reboot: `resume` after it"
    if running["status"] == Deployment.Status.WAITING_APPROVAL:
        gate = running.get("gate") or {}
        return (
            f"{what} waits for approval before {gate.get('before', '?')} until {_when(gate.get('expires_at'))}: "
            f"`mender-orchestrator approve {running['id']}` or `mender-orchestrator reject {running['id']} --reason TEXT`"
        )
    if running["status"] == Deployment.Status.RUNNING:
        where = running["position"].get("phase", "")
        if running["owner_alive"]:
            return (
                f"{what} running ({where}{' ' + step if step else ''}) since {_when(running['started_at'])}"
            )
        return f"{what} was left running by a process that is gone: `resume` or `rollback`"
    if running["status"] == Deployment.Status.QUEUED:
        return f"{what} queued: waiting for a worker to take it (`celery -A worker worker`)"
    return f"{what} {status_label(running['status']).lower()}"


def cmd_history(args: argparse.Namespace) -> int:
    if args.id is not None:
        return _history_of(args.id, as_json=args.json)
    report = selectors.history_report(limit=args.limit or (50 if args.json else 20))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    if not report:
        print("no deployments yet")
    for d in report:
        print(_history_line(d))
    return 0


def _history_of(deployment_id: int, *, as_json: bool) -> int:
    report = selectors.history_report(deployment_id=deployment_id)
    if not report:
        _err(f"deployment {deployment_id} does not exist")
        return ExitCode.INVALID
    d = report[0]
    if as_json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    print(_history_line(d))
    if d["reason"]:
        print(f"  {d['reason']}")
    for o in d["outcomes"]:
        print(f"  {o['key']:<24} {component_ended(o)}")
    for s in d["steps"]:
        failure = s["error"] or f"exit {s['exit_code']}"
        result = s["answer"] or ("ok" if s["ok"] else f"FAILED {failure}")
        print(f"    {_when(s['started_at'])} {s['component']:<24} {s['state']:<24} {result}")
    return 0


def _history_line(d: Mapping[str, Any]) -> str:
    """`#7 2026-11-29 20:41:03 cli root: sys-v2 (sys-v1 -> sys-v2) rolled back in 12s: <reason>`:
    dated by its start (its queue time until it starts), the status in its one wording."""
    sources = sorted({o["from"] for o in d["outcomes"] if o["from"] != o["to"]})
    targets = sorted({o["to"] for o in d["outcomes"] if o["from"] != o["to"]})
    change = f"{', '.join(sources) or '-'} -> {', '.join(targets) or '-'}"
    took = ""
    if d["started_at"] and d["finished_at"]:
        took = f" in {(d['finished_at'] - d['started_at']).total_seconds():.0f}s"
    reason = f": {d['reason']}" if d["reason"] and d["status"] != Deployment.Status.SUCCEEDED else ""
    forced = f"\n  forced past the declared constraints by {d['actor_label']}: {d['forced_reason']}"
    return (
        f"#{d['id']} {_when(d['started_at'] or d['created_at'])} {d['actor_label']}: {d['manifest']} ({change}) "
        f"{status_label(d['status']).lower()}{took}{reason}{forced if d['forced_reason'] else ''}"
    )


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def cmd_show_provides(args: argparse.Namespace) -> int:
    return _print_lines(services.provides_lines)


def cmd_show_inventory(args: argparse.Namespace) -> int:
    return _print_lines(services.inventory_lines)


def _print_lines(source: Callable[[], list[str]]) -> int:
    try:
        lines = source()
    except OrchestratorError as exc:
        _err(str(exc))
        return exc.exit_code
    print("\n".join(lines))
    return 0


def _print_summary(deployment: Deployment) -> None:
    """Per component: what happened and what it runs now (not what the plan meant to do)."""
    print()
    print(f"deployment {deployment.pk}: {status_label(deployment.status).lower()} — {deployment.reason}")
    outcomes = selectors.deployment_components(deployment)
    if not outcomes:
        print("(no components planned)")
        return
    print(f"{'component':<24} {'runs now':<28} what happened")
    for o in outcomes:
        version = o["version"] + (" (uncommitted)" if o["uncommitted"] else "")
        print(f"{o['key']:<24} {version:<28} {component_ended(o)}")
