"""`orchestrator interface-check PATH`: the conformance kit for update interface makers.

Thin: parse the options, run `updates.engine.conformance.check_interface`, print the report.
Exit 0 when nothing failed, 1 when a check failed, 2 on bad arguments (docs/interface-check.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from updates.engine.conformance import DEFAULT_SLOW, DEFAULT_TIMEOUT, Subject, check_interface
from updates.engine.conformance.output import FORMATS, render
from updates.engine.errors import ExitCode, InvalidInput


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "interface-check", help="check an update interface against the protocol (for interface makers)"
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="the interface executable")
    parser.add_argument("--type", required=True, dest="component_type", help="the component type (argv $3)")
    parser.add_argument("--id", dest="component_id", help="the id Identity must answer")
    parser.add_argument(
        "--arg", action="append", default=[], dest="args", help="an interface arg (repeatable)"
    )
    parser.add_argument("--artifact", type=Path, help="the .mender the destructive checks install")
    parser.add_argument(
        "--destructive",
        action="store_true",
        help="install, commit and roll back: bench boards and simulators only",
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds per call (default 30)"
    )
    parser.add_argument(
        "--slow", type=_seconds, default=DEFAULT_SLOW, help="warn when a query takes longer (2)"
    )
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("-o", "--output", type=Path, help="write the report here instead of stdout")
    parser.set_defaults(handler=_run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _run(args: argparse.Namespace) -> int:
    subject = Subject(
        path=args.path,
        component_type=args.component_type,
        component_id=args.component_id,
        args=tuple(args.args),
        timeout=args.timeout,
        slow=args.slow,
    )
    try:
        if args.artifact is not None and not args.destructive:
            raise InvalidInput("--artifact is only used with --destructive")
        report = check_interface(subject, artifact=args.artifact, destructive=args.destructive)
    except InvalidInput as exc:
        print(f"mender-orchestrator interface-check: {exc}", file=sys.stderr)
        return ExitCode.INVALID
    text = render(report, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(
            f"interface-check: {'FAILED' if report.failed else 'OK'}; report in {args.output}",
            file=sys.stderr,
        )
    return ExitCode.FAILED if report.failed else ExitCode.DONE
