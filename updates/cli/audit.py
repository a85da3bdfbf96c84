"""`audit verify|report|export|prune|public-key`: the journal on the command line (docs/audit.md).

Thin edge: parse, call one service or selector, print. `audit verify` exits 0 when the chain is
intact and 1 naming the first broken entry; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from audit import chain as auditchain
from audit import reports as audit
from audit import services as audit_services
from audit.export import audit_export
from audit.keys import signing_key
from updates.actors import actor_of_command_line

FORMATS = ("json", "csv", "steps-csv", "html")


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="verify the audit journal, reports and exports of past deployments")
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    verify = commands.add_parser("verify", help="check the journal's hash chain and signed anchors")
    verify.add_argument("--export", type=Path, dest="export_file", help="check an exported archive offline")
    verify.add_argument("--public-key", type=Path, help="the published public key (PEM) to check against")
    verify.add_argument(
        "--anchors",
        type=Path,
        help="anchors kept elsewhere: anchors.jsonl of an earlier export, or the orchestrator.audit log lines",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_verify)

    report = commands.add_parser("report", help="one section per deployment: who, what, every step")
    _period(report)
    report.add_argument("--format", choices=FORMATS, default="html")
    report.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    report.set_defaults(handler=cmd_report)

    export = commands.add_parser("export", help="a signed archive a third party verifies offline")
    _period(export)
    export.add_argument("-o", "--output", type=Path, required=True)
    export.set_defaults(handler=cmd_export)

    prune = commands.add_parser("prune", help="clear step output older than a date (digests stay)")
    prune.add_argument("--before", type=_when, help="a date (YYYY-MM-DD) or ISO time")
    prune.add_argument("--policy", action="store_true", help="apply ORCH_AUDIT_OUTPUT_RETENTION_DAYS")
    prune.set_defaults(handler=cmd_prune)

    key = commands.add_parser("public-key", help="print the appliance's anchor-signing public key (PEM)")
    key.add_argument("--fingerprint", action="store_true", help="print its sha256 fingerprint instead")
    key.set_defaults(handler=cmd_public_key)


def _period(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_when, help="from this date (YYYY-MM-DD) or ISO time")
    parser.add_argument("--until", type=_until, help="up to this date, inclusive (YYYY-MM-DD), or ISO time")


def _when(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _until(text: str) -> datetime:
    """A date means the whole day: up to the next midnight (UTC)."""
    moment = _when(text)
    return moment + timedelta(days=1) if len(text) == 10 else moment


def _err(message: str) -> None:
    print(f"mender-orchestrator: {message}", file=sys.stderr, flush=True)


def _public_key(path: Path | None) -> auditchain.Ed25519PublicKey | None:
    return auditchain.load_public_pem(path.read_bytes()) if path else None


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        pinned = _public_key(args.public_key)
        published = list(auditchain.anchors_from_jsonl(args.anchors.read_bytes())) if args.anchors else []
        if args.export_file:
            archive = auditchain.archive_read(args.export_file.read_bytes(), pinned=pinned)
            verdict = auditchain.archive_verify(archive, published=published)
        else:
            verdict = audit.audit_verify(public_key=pinned, published=published)
    except (OSError, ValueError, KeyError) as exc:
        _err(str(exc))
        return 2
    except auditchain.ArchiveError as exc:
        print(f"export {args.export_file} BROKEN: {exc}")
        return 1
    print(json.dumps(verdict.as_json(), indent=2) if args.json else verdict.summary())
    return 0 if verdict.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    report = audit.audit_report(since=args.since, until=args.until)
    if args.format == "json":
        text = json.dumps(report, indent=2)
    elif args.format in ("csv", "steps-csv"):
        text = audit.report_csv(report, steps=args.format == "steps-csv")
    else:
        text = audit.report_html(report)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    result = audit_export(since=args.since, until=args.until, path=args.output)
    print(f"wrote {result['path']}: {result['entries']} entries, {result['anchors']} signed anchors")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    if bool(args.before) == bool(args.policy):
        _err("audit prune needs --before DATE or --policy (not both)")
        return 2
    actor = actor_of_command_line()
    if args.policy:
        count = audit_services.audit_prune_by_policy(actor=actor)
    else:
        count = audit_services.audit_prune(before=args.before, actor=actor)
    print(f"cleared the output of {count} steps (their digests stay in the journal)")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    public = signing_key().public_key()
    if args.fingerprint:
        print(auditchain.key_fingerprint(public))
    else:
        sys.stdout.write(auditchain.public_pem(public).decode())
    return 0
