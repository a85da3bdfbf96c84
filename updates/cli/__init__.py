"""The `orchestrator` command line (also `bin/mender-orchestrator`).

Our own argparse tree rather than Django's, because the exit codes and `--version` are a
contract (docs/cli.md §8): 0 done, 1 failed, 2 invalid input, 3 busy, 4 reboot required.
"""

from __future__ import annotations

import argparse
import logging
import sys

from django.conf import settings
from django.db import DatabaseError

from updates.engine.errors import ExitCode, OrchestratorError
from updates.engine.version import VERSION
from updates.services.backup import datastore_has_database, datastore_prepare

from . import access, artifact, audit, bundle, interface_check, maintenance, policy, progress, system
from . import hooks as hook_secret

LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mender-orchestrator", description="System update orchestrator")
    parser.add_argument("--version", action="version", version=f"mender-orchestrator {VERSION}")
    # Not given: LOG_LEVEL decides (default warning), so a deployment's INFO lines stay out of a
    # terminal unless asked for; they go to stderr (journald), never to stdout.
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    artifact.register(sub)
    audit.register(sub)
    bundle.register(sub)
    system.register(sub)
    policy.register(sub)
    policy.register_drift(sub)
    access.register(sub)
    hook_secret.register(sub)
    maintenance.register(sub)
    interface_check.register(sub)
    for name, command in sub.choices.items():
        # Every command but the pure file tool works on the database (a hook-secret change is
        # recorded in the audit journal) and migrates it first; backup/restore/migrate are the
        # upkeep that must see the schema as it is (updates/cli/maintenance.py).
        command.set_defaults(
            needs_database=name not in ("artifact", "backup", "restore", "migrate", "interface-check")
        )
    return parser


def _configure_logging(level: str | None) -> None:
    mapped = (
        settings.LOG_LEVEL
        if level is None
        else {"trace": "DEBUG", "fatal": "CRITICAL"}.get(level, level.upper())
    )
    if level is not None:
        logging.getLogger("orchestrator").setLevel(mapped)
    # The services always write the signed anchors (the logger is pinned at INFO for journald);
    # the command line follows its own level, so a quiet run stays quiet: installed, it reads
    # LOG_LEVEL=INFO from the units' environment file (docs/audit.md).
    logging.getLogger("orchestrator.audit").setLevel(mapped)


# The commands that may start a data store: a fresh gateway's first `install` (from Mender's update
# module), the first bundle, the first account. Every other command reads one, and on a data store
# without a database it says so instead of creating an empty one and reporting an empty system.
CREATES_STORE = {
    "install",
    "resume",
    "rollback",
    "bundle add",
    "user create",
    "user ensure-admin",
    "hook-secret set",
    "hook-secret rotate",
}


def _command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, f"{str(args.command).replace('-', '_')}_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def _no_datastore_message() -> str:
    return (
        f"no data store at {settings.DATASTORE_DIR} (no database yet); this command reads one.\n"
        "  The demo: run `bin/run` in the checkout; it writes var/local.env, which commands run from\n"
        "  the checkout read. Another data store: set MENDER_ORCHESTRATOR_DATASTORE_DIR\n"
        "  (docs/environment.md). A new appliance: `mender-orchestrator migrate` creates an empty one."
    )


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    # `audit verify --export` checks a file, possibly on another machine: no data store needed.
    if getattr(args, "needs_database", False) and not getattr(args, "export_file", None):
        try:
            if _command_name(args) not in CREATES_STORE and not datastore_has_database():
                print(f"mender-orchestrator: {_no_datastore_message()}", file=sys.stderr)
                return ExitCode.INVALID
            datastore_prepare()
        except (OSError, DatabaseError, OrchestratorError) as exc:
            print(f"mender-orchestrator: cannot open the data store: {exc}", file=sys.stderr)
            return ExitCode.FAILED
    with progress.terminal_progress():  # bytes and rate of long work, on a terminal only
        code: int = args.handler(args)
    return code
