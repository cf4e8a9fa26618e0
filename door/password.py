"""The door's password: configured, or generated once and kept beside the archive.

Kept in DATA_DIR/door-password (mode 0600) so that a reader's saved DSN (a Grafana data source, a script) keeps
working across restarts, and so that `wxarchive sql` and `wxarchive api` on the same machine find it without
being told. A configured WXARCHIVE_DOOR_PASSWORD wins and is never written to disk.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from wxarchive.config import Settings

__all__ = ["door_password", "password_file"]


def password_file(settings: Settings) -> Path:
    return settings.data_dir / "door-password"


def door_password(settings: Settings, create: bool = True) -> str:
    """The configured password, else the kept one, else (with `create`) a new one, kept. "" when there is none
    and none may be made (a reader on a machine where the door never ran)."""
    if settings.door_password:
        return settings.door_password
    path = password_file(settings)
    try:
        kept = path.read_text().strip()
        if kept:
            return kept
    except FileNotFoundError:
        pass
    if not create:
        return ""
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password
