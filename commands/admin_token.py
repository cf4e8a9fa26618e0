"""The local stack's admin token: made once by `wxarchive up` (a principal event, audited as the CLI's user) and
kept in DATA_DIR/admin-token (mode 0600), so every `up` on the same data directory prints the same token, and a
token that was revoked, or whose principals topic is gone (a new broker), is replaced by a new one."""

from __future__ import annotations

import os
from pathlib import Path

from access.audit import AuditLog
from access.caller import Caller
from access.principals import current_principals
from access.roles import Role
from access.token_admin import create_token
from wxarchive.config import Settings

__all__ = ["local_admin_token", "token_file"]

NAME = "wxarchive-up-admin"


def token_file(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "admin-token"


async def local_admin_token(settings: Settings) -> str:
    """The kept admin token if the principals topic holds it live, else a new one, kept."""
    path = token_file(settings)
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept and (await current_principals(settings)).active(kept) is not None:
        return kept
    audit = AuditLog(settings)
    try:
        token, _ = await create_token(settings, NAME, Role.ADMIN, Caller.cli(), audit)
    finally:
        await audit.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)  # a file that was there before keeps its mode through O_CREAT
    return token
