"""`user create|list|set-role`, `token create|list|revoke` and `access blocks|unblock`: who may
use the HTTP API, and lifting a block that failed attempts put on an address.

Thin edge: parse, call one service or selector, print. `token create` prints only the token on
stdout (shown once; only its hash is kept), so `TOKEN=$(… token create …)` works in scripts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from accounts import selectors, services
from accounts.models import Role
from updates.actors import actor_of_command_line

ROLES = [r.value for r in Role]


def register(sub: Any) -> None:
    user = sub.add_parser("user", help="API and web users, each with one role (viewer, operator, admin)")
    users = user.add_subparsers(dest="user_command", required=True, metavar="SUBCOMMAND")
    create = users.add_parser("create", help="create a user; the password is read from stdin")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--password-stdin", action="store_true", required=True)
    create.set_defaults(handler=cmd_user_create)
    users.add_parser("list", help="users and their roles").set_defaults(handler=cmd_user_list)
    set_role = users.add_parser("set-role", help="change a user's role (their tokens never outrank it)")
    set_role.add_argument("name")
    set_role.add_argument("role", choices=ROLES)
    set_role.set_defaults(handler=cmd_user_set_role)
    ensure = users.add_parser("ensure-admin", help="first start: create user admin if no admin exists")
    ensure.set_defaults(handler=cmd_user_ensure_admin)

    token = sub.add_parser("token", help="API tokens (Authorization: Bearer)")
    tokens = token.add_subparsers(dest="token_command", required=True, metavar="SUBCOMMAND")
    make = tokens.add_parser("create", help="create a token; prints only the token (shown once)")
    make.add_argument("--user", required=True)
    make.add_argument("--role", choices=ROLES, required=True)
    make.add_argument("--name", default="")
    make.add_argument("--expires", type=int, metavar="DAYS")
    make.set_defaults(handler=cmd_token_create)
    listing = tokens.add_parser("list", help="tokens (never the tokens themselves)")
    listing.add_argument("--user")
    listing.set_defaults(handler=cmd_token_list)
    revoke = tokens.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=cmd_token_revoke)

    access = sub.add_parser("access", help="blocks from failed logins and bad tokens")
    accesses = access.add_subparsers(dest="access_command", required=True, metavar="SUBCOMMAND")
    blocks = accesses.add_parser("blocks", help="addresses (and accounts) over their failure limit")
    blocks.set_defaults(handler=cmd_access_blocks)
    unblock = accesses.add_parser("unblock", help="forget the failures counted against an address")
    unblock.add_argument("address")
    unblock.add_argument("--user", help="only the failed logins for this account")
    unblock.set_defaults(handler=cmd_access_unblock)


def _err(message: str) -> int:
    print(f"mender-orchestrator: {message}", file=sys.stderr, flush=True)
    return 2


def cmd_user_create(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        return _err("no password on stdin")
    try:
        services.user_create(
            username=args.name, role=Role(args.role), password=password, actor=actor_of_command_line()
        )
    except services.AccessError as exc:
        return _err(str(exc))
    print(f"user {args.name} created ({args.role})")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    for user in selectors.user_list():
        role = selectors.role_of(user)
        print(f"{user.username:<24} {role or '-':<9} {'active' if user.is_active else 'inactive'}")
    return 0


def cmd_user_set_role(args: argparse.Namespace) -> int:
    try:
        services.user_set_role(username=args.name, role=Role(args.role), actor=actor_of_command_line())
    except services.AccessError as exc:
        return _err(str(exc))
    print(f"user {args.name} is now {args.role}")
    return 0


def cmd_user_ensure_admin(args: argparse.Namespace) -> int:
    password = services.admin_ensure(actor=actor_of_command_line())
    if password is not None:
        print(f"created user admin (role admin) with password: {password}")
        print(
            "(shown once; to set another: `python manage.py changepassword admin` in this environment,"
            " `mender-orchestrator --manage changepassword admin` on an installed appliance)"
        )
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    try:
        token = services.token_create(
            username=args.user,
            role=Role(args.role),
            name=args.name,
            expires_days=args.expires,
            actor=actor_of_command_line(),
        )
    except services.AccessError as exc:
        return _err(str(exc))
    print(token.secret)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    for t in selectors.token_list(username=args.user):
        state = (
            "revoked" if t.revoked_at else f"expires {t.expires_at:%Y-%m-%d}" if t.expires_at else "no expiry"
        )
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        print(
            f"{t.pk:>4} {t.user.username:<16} {t.name:<20} {t.role:<9} {t.prefix}… {state}, last used {used}"
        )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    try:
        token = services.token_revoke(token_id=args.id, actor=actor_of_command_line())
    except services.AccessError as exc:
        return _err(str(exc))
    print(f"token {token.pk} ({token.user.username}/{token.name}) revoked")
    return 0


def cmd_access_blocks(args: argparse.Namespace) -> int:
    found = selectors.auth_blocks()
    if not found:
        print("no address or account is over its failure limit: nothing is blocked")
    for b in found:
        what = f"login as {b.account}" if b.kind == "login" else "bad tokens"
        print(f"{b.address:<40} {what:<30} {b.failures:>4} failures, last {b.last:%Y-%m-%d %H:%M:%S}")
    return 0


def cmd_access_unblock(args: argparse.Namespace) -> int:
    cleared = services.auth_block_clear(
        address=args.address, account=args.user, actor=actor_of_command_line()
    )
    print(f"{cleared} failed attempt(s) from {args.address} forgotten")
    return 0
