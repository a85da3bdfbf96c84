"""`backup`, `restore`, `migrate`: the appliance's own upkeep (docs/operations.md).

Thin edge: parse, call updates/services/backup.py, print. These three never run the automatic
migration other commands do at start: `migrate` is that step (with a backup first), a backup
must show the schema as it is, and a restore brings its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from updates.engine.errors import ExitCode, OrchestratorError
from updates.services import backup as service

from . import progress


def register(sub: Any) -> None:
    backup = sub.add_parser(
        "backup", help="one consistent backup of the database and the data store (tar.gz)"
    )
    backup.add_argument(
        "-o", "--output", type=Path, help="default: <datastore>/backups/backup-<UTC time>.tar.gz"
    )
    backup.add_argument("--json", action="store_true")
    backup.set_defaults(handler=cmd_backup)

    restore = sub.add_parser("restore", help="replace the database and the data store with a backup")
    restore.add_argument("archive", type=Path, metavar="FILE")
    restore.add_argument(
        "--yes", action="store_true", help="do not ask (required when stdin is not a terminal)"
    )
    restore.set_defaults(handler=cmd_restore)

    migrate = sub.add_parser("migrate", help="apply pending schema migrations (backing up first)")
    migrate.add_argument("app", nargs="?", help="only this app (e.g. updates)")
    migrate.add_argument("target", nargs="?", help="to this migration (or `zero`); may go backwards")
    migrate.set_defaults(handler=cmd_migrate)


def _err(message: str) -> None:
    print(f"mender-orchestrator: {message}", file=sys.stderr, flush=True)


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size} bytes"


def _in_progress(manifest: dict[str, Any]) -> str:
    running = manifest.get("deployment_in_progress")
    if not running:
        return ""
    return f"note: deployment {running['id']} was {running['status']} (`resume` continues it)"


def print_backup(result: service.BackupResult) -> None:
    m = result.manifest
    count = sum(len(v) for v in m["migrations"].values())
    print(f"wrote {result.path} ({_size(result.size)})")
    print(f"  database: {m['database']['engine']} ({count} migrations applied)")
    print(f"  data store: {', '.join(m['included']) or 'nothing'} ({len(m['members']) - 1} files)")
    if note := _in_progress(m):
        print(f"  {note}")


def _stderr(line: str) -> None:
    progress.interrupt()
    print(line, file=sys.stderr, flush=True)


def cmd_backup(args: argparse.Namespace) -> int:
    try:
        result = service.backup_create(output=args.output, echo=_stderr)
    except (OrchestratorError, OSError) as exc:
        _err(f"backup failed: {exc}")
        return ExitCode.FAILED
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print_backup(result)
    return ExitCode.DONE


def _confirm(prepared: service.PreparedRestore) -> bool:
    m = prepared.manifest
    print(f"backup of {m['created']} (appliance {m['appliance_version']}): {', '.join(m['included'])}")
    answer = input(f"replace the database and data store {service.datastore_dir()} with it? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_restore(args: argparse.Namespace) -> int:
    if not args.yes and not sys.stdin.isatty():
        _err(
            "restore replaces the database and the data store: pass --yes to confirm (stdin is not a terminal)"
        )
        return ExitCode.INVALID
    try:
        service.restore_check_idle()
        prepared = service.restore_prepare(source=args.archive)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        _err(f"{args.archive}: {exc.strerror}")
        return ExitCode.INVALID
    except OrchestratorError as exc:
        _err(f"restore refused: {exc}")
        return exc.exit_code
    except OSError as exc:  # the disk, while unpacking beside the data store: nothing replaced
        _err(f"restore failed before replacing anything: {exc}")
        return ExitCode.FAILED
    if not args.yes and not _confirm(prepared):
        service.restore_discard(prepared)
        _err("not restored")
        return ExitCode.INVALID
    try:
        result = service.restore_apply(prepared)
    except (OrchestratorError, OSError) as exc:
        _err(f"restore failed: {exc}")
        return ExitCode.FAILED
    print(
        f"restored {args.archive} (taken {result.backup['created']}, appliance {result.backup['appliance_version']})"
    )
    print(
        f"  {result.deployments} deployments; active manifest: {result.active_manifest or 'none'}; {result.system}"
    )
    if result.migrated:
        print(f"  migrated forward: {', '.join(result.migrated)}")
    if note := _in_progress(result.backup):
        print(f"  {note}")
    return ExitCode.DONE


def _migrations_summary(names: list[str]) -> str:
    """An upgrade's few migrations by name; a fresh database's dozens per app (`auth 12, …`)."""
    if len(names) <= 5:
        return ", ".join(names)
    per_app = Counter(name.split(".", 1)[0] for name in names)
    return ", ".join(f"{app} {count}" for app, count in per_app.items())


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        result = service.migrate_run(app=args.app, target=args.target, echo=_stderr)
    except OrchestratorError as exc:
        _err(str(exc))
        return exc.exit_code
    if not result.applied:
        print("no migrations to apply")
        return ExitCode.DONE
    if result.backup:
        print(f"backup before migrating: {result.backup.path}")
    count = len(result.applied)
    print(f"applied {count} migration{'s' * (count != 1)}: {_migrations_summary(result.applied)}")
    for path in result.pruned:
        print(f"removed old automatic backup {path}")
    return ExitCode.DONE
