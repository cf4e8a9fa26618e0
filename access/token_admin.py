"""Creating, listing and revoking tokens: what `wxarchive tokens` does, and what the API's token routes can call.

Each change is audited first and then written as a principal event: if the audit record cannot be written the
change is not made (fail closed), and a token is shown only after both were acknowledged, so a token that
exists was always recorded, and one whose event failed was never seen by anyone.
"""

from __future__ import annotations

from access.audit import AuditRecorder
from access.caller import Caller
from access.principals import current_principals, publish_principal
from access.roles import Role
from access.tokens import hash_token, new_token, token_id
from schemas.access import Principal, now_ms
from wxarchive.config import Settings
from wxarchive.errors import ConfigError, WxarchiveError

__all__ = ["AmbiguousToken", "UnknownToken", "check_name", "create_token", "find_token", "list_tokens", "revoke_token"]

MAX_NAME_CHARS = 100


class UnknownToken(WxarchiveError):
    """No token has this id or (live) name."""

    exit_code = 2
    http_status = 404


class AmbiguousToken(WxarchiveError):
    """More than one live token has this name: it must be named by its token_id."""

    exit_code = 2
    http_status = 409


def check_name(name: str) -> str:
    """A principal's name as stored: trimmed, printable, not empty, at most MAX_NAME_CHARS."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ConfigError(f"a token's name must be 1 to {MAX_NAME_CHARS} printable characters, got {name!r}")
    return name


async def create_token(settings: Settings, name: str, role: Role, caller: Caller, audit: AuditRecorder
                       ) -> tuple[str, Principal]:
    """A new token for `name` in `role`: returns the token (to be shown once, never again) and its principal."""
    name = check_name(name)
    token = new_token()
    digest = hash_token(token)
    now = now_ms()
    principal = Principal(token_id(digest), name, role.value, digest, now, caller.name, None, now)
    await audit.record(caller.audit("tokens.create", {"token_id": principal.token_id, "name": name,
                                                      "role": role.value}, 1, 201))
    await publish_principal(settings, principal)
    return token, principal


async def list_tokens(settings: Settings) -> list[Principal]:
    """Every token ever made, revoked ones too, oldest first."""
    return (await current_principals(settings)).listing()


async def revoke_token(settings: Settings, id_or_name: str, caller: Caller, audit: AuditRecorder) -> Principal:
    """Revoke the token named by its token_id or its holder's name; returns the revoked principal. Every API
    process refuses the token within seconds."""
    target = find_token(await list_tokens(settings), id_or_name)
    await audit.record(caller.audit("tokens.revoke", {"token_id": target.token_id, "name": target.name}, 1))
    revoked = target.revoke(now_ms())
    await publish_principal(settings, revoked)
    return revoked


def find_token(principals: list[Principal], id_or_name: str) -> Principal:
    """The live token with this token_id, or else the one live token with this name; UnknownToken or
    AmbiguousToken otherwise, saying what to do."""
    wanted = id_or_name.strip()
    by_id = [p for p in principals if p.token_id == wanted]
    named = [p for p in principals if p.name == wanted]
    live = [p for p in (by_id or named) if not p.revoked]
    if len(live) == 1:
        return live[0]
    if len(live) > 1:
        ids = ", ".join(p.token_id for p in live)
        raise AmbiguousToken(f"{len(live)} live tokens are named {wanted!r} ({ids}): revoke one by its token_id")
    if by_id or named:
        raise UnknownToken(f"the token {wanted!r} is revoked already")
    raise UnknownToken(f"no token has the id or name {wanted!r}; `wxarchive tokens list` shows them")
