"""`bundle add|list|show|delta` and `gc`: the artifact store on the command line.

Thin edge: parse, call one service or selector, print. `bundle add` exits 0 when the bundle was
accepted and 2 when it was rejected (the record and its reasons are kept either way).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from updates import selectors
from updates.actors import actor_of_command_line
from updates.engine.delta import delta_size, make_delta_bundle
from updates.engine.errors import ExitCode, OrchestratorError
from updates.services import bundles, retention

JSON_HELP = "print one JSON document (stable fields)"


def register(sub: Any) -> None:
    parser = sub.add_parser("bundle", help="add, list and show bundles (manifest + artifacts)")
    commands = parser.add_subparsers(dest="bundle_command", required=True, metavar="SUBCOMMAND")
    add = commands.add_parser("add", help="ingest a .tar/.tar.gz bundle, manifest artifact or manifest YAML")
    add.add_argument("file", type=Path)
    add.add_argument("--json", action="store_true", help=JSON_HELP)
    add.set_defaults(handler=cmd_bundle_add)
    listing = commands.add_parser("list", help="bundles, newest first")
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    listing.set_defaults(handler=cmd_bundle_list)
    show = commands.add_parser("show", help="one bundle with its check results and artifacts")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help=JSON_HELP)
    show.set_defaults(handler=cmd_bundle_show)
    delta = commands.add_parser(
        "delta", help="make a bundle whose artifacts are binary deltas against those of an older bundle"
    )
    delta.add_argument("old", type=Path, help="the bundle the appliance holds (its artifacts are the bases)")
    delta.add_argument("new", type=Path, help="the bundle to ship")
    delta.add_argument("-o", "--output", type=Path, required=True, help="where to write the delta bundle")
    delta.set_defaults(handler=cmd_bundle_delta)
    gc = sub.add_parser("gc", help="evict unneeded artifacts beyond ArtifactsCache.MaxSizeBytes")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc.set_defaults(handler=cmd_gc)


def _err(message: str) -> None:
    print(f"mender-orchestrator: {message}", file=sys.stderr, flush=True)


def cmd_bundle_add(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        _err(f"{args.file}: no such file")
        return ExitCode.INVALID
    try:
        bundle = bundles.bundle_add_file(path=args.file, actor=actor_of_command_line())
    except OrchestratorError as exc:  # e.g. the configuration itself is invalid
        _err(str(exc))
        return exc.exit_code
    report = selectors.bundle_report(bundle)
    print(json.dumps(report, indent=2, default=str)) if args.json else print_bundle(report)
    return ExitCode.DONE if bundle.status == "accepted" else ExitCode.INVALID


def print_bundle(report: Mapping[str, Any]) -> None:
    print(
        f"bundle {report['id']}: {report['status']} ({report['form'] or '-'}, {report['size']} bytes, sha256 {report['sha256']})"
    )
    print(f"added by {report['actor_label']}")
    if report["manifest"]:
        print(f"manifest: {report['manifest']} ({report['manifest_member']})")
    for check in report["checks"]:
        print(f"  [{'ok' if check['ok'] else 'FAILED'}] {check['check']}: {check['detail']}")
    for a in report["artifacts"]:
        signer = f", signed by {a['signer_fingerprint'][:16]}…" if a["signed"] else ""
        stored = f"{a['sha256'][:12]} {a['size']} bytes"
        if a.get("full_sha256"):  # docs/bytes.md: the store holds the delta, Download rebuilds it
            stored = f"{a['full_sha256'][:12]}, stored as a delta ({a['sha256'][:12]} {a['size']} bytes)"
        print(f"  artifact {a['member'] or '(manifest artifact)'}: {a['name']} {stored}{signer}")


def cmd_bundle_list(args: argparse.Namespace) -> int:
    rows = [selectors.bundle_report(b) for b in selectors.bundle_list()]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no bundles yet: add one with `bundle add FILE` (or `install FILE`)")
        return 0
    print(f"{'id':>5} {'status':<9} {'form':<17} {'manifest':<28} file")
    for r in rows:
        print(
            f"{r['id']:>5} {r['status']:<9} {r['form'] or '-':<17} {r['manifest'] or '-':<28} {r['filename']}"
        )
    return 0


def cmd_bundle_show(args: argparse.Namespace) -> int:
    bundle = selectors.bundle_get(bundle_id=args.id)
    if bundle is None:
        _err(f"bundle {args.id} does not exist")
        return ExitCode.INVALID
    report = selectors.bundle_report(bundle)
    print(json.dumps(report, indent=2, default=str)) if args.json else print_bundle(report)
    return 0


def cmd_bundle_delta(args: argparse.Namespace) -> int:
    for path in (args.old, args.new):
        if not path.is_file():
            _err(f"{path}: no such file")
            return ExitCode.INVALID
    try:
        entries = make_delta_bundle(args.old, args.new, args.output)
    except OrchestratorError as exc:
        _err(str(exc))
        return exc.exit_code
    for e in entries:
        delta = delta_size(args.output, e)
        print(
            f"{e.member}: delta against {e.base_name}, {delta} bytes ({100 * delta / max(e.size, 1):.1f} % of {e.size})"
        )
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, {len(entries)} delta(s))")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    try:
        removed = retention.store_gc(dry_run=args.dry_run, actor=actor_of_command_line())
    except OrchestratorError as exc:  # e.g. the configuration itself is invalid
        _err(str(exc))
        return exc.exit_code
    verb = "would remove" if args.dry_run else "removed"
    for item in removed:
        print(
            f"{verb} {item['sha256'][:12] or '-':<12} {item['name']:<30} {item['size']:>12} bytes: {item['reason']}"
        )
    print(f"{verb} {len(removed)} file(s), {sum(i['size'] for i in removed)} bytes")
    return 0
