"""`wxarchive tokens create|list|revoke`: the API's bearer tokens, as events on the compacted principals topic."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from access.roles import Role
from commands.common import Subcommands, leaf
from wxarchive.config import Settings

if TYPE_CHECKING:
    from schemas.access import Principal

ROLE_HELP = """\
roles (what each may do):
  viewer       conversations: lists, transcripts, one message with its raw callback
  moderator    moderation hits and the sensitive-word list
  compliance   search, export, holds and the audit log, and conversations
  analyst      read-only SQL and the views
  admin        everything, tokens and deletion included"""


def register(commands: Subcommands) -> None:
    tokens = commands.add_parser(
        "tokens", help="create, list and revoke the API's bearer tokens",
        description="Bearer tokens for `wxarchive api`, each with one role. Only a token's SHA-256 is stored, as an "
                    "event on the compacted topic PREFIX.principals; a token is shown once, when it is made. A revoke "
                    "takes effect in every API process within seconds. Creating and revoking are audited (principal "
                    "cli:USER) on PREFIX.audit, and refused when the audit record cannot be written.")
    actions = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = leaf(actions, "create", _cmd_tokens, help="make a token and print it, once",
                  description="Make a bearer token for NAME in ROLE and print it on standard output, once: it is not "
                              "stored and cannot be shown again (revoke it and make another if it is lost).",
                  epilog=ROLE_HELP + "\n\nexample:\n  wxarchive tokens create --name scrm-backend --role viewer")
    create.add_argument("--name", required=True, help="who or what holds the token, e.g. alice or scrm-backend")
    create.add_argument("--role", required=True, choices=[r.value for r in Role], metavar="ROLE",
                        help="viewer, moderator, compliance, analyst or admin (see below)")
    listing = leaf(actions, "list", _cmd_tokens, help="show every token: id, name, role, created, revoked",
                   description="Every token ever made, revoked ones too, oldest first (times in UTC). Hashes and "
                               "tokens are never shown.")
    listing.add_argument("--json", action="store_true", help="one JSON object per token")
    revoke = leaf(actions, "revoke", _cmd_tokens, help="revoke a token by its id or its holder's name",
                  description="Revoke a token: every API process refuses it within seconds. Name it by its token_id "
                              "(from `tokens list`) or by its holder's name when only one live token has that name.")
    revoke.add_argument("token", metavar="TOKEN_ID_OR_NAME")


def _cmd_tokens(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    if args.action == "create":
        token, principal = asyncio.run(_create(settings, args.name, Role(args.role)))
        print(token)
        print(f"token {principal.token_id} for {principal.name!r} ({principal.role}) created; it is shown only this "
              "once and cannot be shown again: keep it now", file=sys.stderr)
    elif args.action == "revoke":
        principal = asyncio.run(_revoke(settings, args.token))
        print(f"revoked token {principal.token_id} of {principal.name!r} ({principal.role}); API processes refuse it "
              "within seconds")
    else:
        _print_list(settings, args.json)
    return 0


async def _create(settings: Settings, name: str, role: Role) -> tuple[str, Principal]:
    from access.audit import AuditLog
    from access.caller import Caller
    from access.token_admin import create_token

    audit = AuditLog(settings)
    try:
        return await create_token(settings, name, role, Caller.cli(), audit)
    finally:
        await audit.close()


async def _revoke(settings: Settings, token_id_or_name: str) -> Principal:
    from access.audit import AuditLog
    from access.caller import Caller
    from access.token_admin import revoke_token

    audit = AuditLog(settings)
    try:
        return await revoke_token(settings, token_id_or_name, Caller.cli(), audit)
    finally:
        await audit.close()


def _print_list(settings: Settings, as_json: bool) -> None:
    import asyncio

    import orjson

    from access.token_admin import list_tokens

    principals = asyncio.run(list_tokens(settings))
    if as_json:
        for p in principals:
            print(orjson.dumps({"token_id": p.token_id, "name": p.name, "role": p.role, "created_at": p.created_at,
                                "created_by": p.created_by, "revoked_at": p.revoked_at}).decode())
        return
    rows = [("TOKEN_ID", "NAME", "ROLE", "CREATED", "REVOKED")]
    rows += [(p.token_id, p.name, p.role, _utc(p.created_at), _utc(p.revoked_at) if p.revoked else "-")
             for p in principals]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"{len(principals)} tokens, {sum(not p.revoked for p in principals)} live", file=sys.stderr)


def _utc(ms: int | None) -> str:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
