"""Who is asking, and from where: what every audit record of one request shares.

The API makes one Caller per authenticated request (`Caller.of`), the CLI one for the person at the terminal
(`Caller.cli`); either turns what was done into an AuditRecord with `audit(...)`, so every record of the read
side names its principal, token, role, request and client the same way.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from typing import Any

from schemas.access import AuditRecord, Principal, new_audit_id

__all__ = ["Caller"]


@dataclass(frozen=True)
class Caller:
    name: str
    token_id: str
    role: str
    client: str = ""
    request_id: str = field(default_factory=new_audit_id)

    @classmethod
    def of(cls, principal: Principal, client: str, request_id: str) -> Caller:
        return cls(principal.name, principal.token_id, principal.role, client, request_id)

    @classmethod
    def cli(cls) -> Caller:
        """The operator at this terminal: whoever can reach Kafka from here may manage tokens, as an admin, and is
        recorded by their login name."""
        return cls(f"cli:{_os_user()}", "", "admin", "local")

    def audit(self, action: str, parameters: dict[str, Any] | None = None, result_count: int | None = None,
              status: int = 200) -> AuditRecord:
        """The audit record of one thing this caller did (stamped now, with a new id)."""
        return AuditRecord(principal=self.name, token_id=self.token_id, role=self.role, action=action,
                           parameters=dict(parameters or {}), result_count=result_count, status=status,
                           request_id=self.request_id, client=self.client)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return f"uid{os.getuid()}"
