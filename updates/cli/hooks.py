"""`hook-secret set|rotate`: the shared secret Mender signs its webhooks with (X-Men-Signature).

Thin edge. `set` reads the secret from stdin (never from argv, which `ps` shows to everyone);
`rotate` prints the new secret once, on stdout alone, so `$(orchestrator hook-secret rotate)`
captures exactly the secret. Either way it is stored as is in `<datastore>/hook-secret`, mode
0600: an HMAC key has to be kept, not hashed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from updates.actors import actor_of_command_line
from updates.engine.hooks import SecretError
from updates.services import hook_secret as hooks


def register(sub: Any) -> None:
    parser = sub.add_parser("hook-secret", help="set or rotate the Mender webhook secret")
    commands = parser.add_subparsers(dest="hook_secret_command", required=True, metavar="SUBCOMMAND")
    setter = commands.add_parser("set", help="read the secret (hex, as entered in Mender) from stdin")
    setter.set_defaults(handler=cmd_hook_secret_set)
    rotate = commands.add_parser("rotate", help="generate a new secret and print it once")
    rotate.set_defaults(handler=cmd_hook_secret_rotate)


def cmd_hook_secret_set(args: argparse.Namespace) -> int:
    try:
        hooks.hook_secret_set(secret=sys.stdin.read(), actor=actor_of_command_line())
    except (SecretError, OSError) as exc:
        print(f"mender-orchestrator: hook-secret set: {exc}", file=sys.stderr)
        return 2
    print(f"hook secret stored in {_where()}", file=sys.stderr)
    return 0


def cmd_hook_secret_rotate(args: argparse.Namespace) -> int:
    try:
        secret = hooks.hook_secret_rotate(actor=actor_of_command_line())
    except OSError as exc:
        print(f"mender-orchestrator: hook-secret rotate: {exc}", file=sys.stderr)
        return 1
    print(secret)
    print(
        f"hook secret replaced in {_where()}; it is shown only now: "
        "enter it as the webhook's secret in Mender",
        file=sys.stderr,
    )
    return 0


def _where() -> str:
    """The file and its mode: 0600, or 0640 in the shared data store of a production install."""
    path = hooks.hook_secret_path()
    return f"{path} (mode {path.stat().st_mode & 0o777:04o})"
