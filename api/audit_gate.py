"""Fail closed: one audit record per request that reads or changes archive content, acknowledged by Kafka before
any of the answer leaves (issue 13; DESIGN, read side: "every request that reads or changes archive content leaves
one audit record, or fails closed with 503").

A route gets an `Access` once its caller is let in (api/auth.py), does its work, then calls `record(...)` with what
it found and only then returns the content. A route that fails after it began (no such message, a refused SQL
statement, ClickHouse away) is recorded by the app's error handler with the failure's status, so every attempt
that reached the archive is on record once, whatever it ended with. If the record cannot be written
(AuditUnavailable) the caller gets 503 and nothing else. Requests refused before the route ran (no token, the wrong
role, parameters that do not validate) read nothing and are not audit records; the metrics count them.
"""

from __future__ import annotations

from typing import Any, Protocol

from access.caller import Caller
from schemas.access import AuditRecord

__all__ = ["Access", "AuditWriter"]

MAX_PARAMETER_CHARS = 64 * 1024  # a SQL text or a name as given, cut to this in the record (the table keeps it)


class AuditWriter(Protocol):
    """What writes audit records: access.audit.AuditLog, returning once Kafka acknowledged, else raising
    AuditUnavailable."""

    async def record(self, entry: AuditRecord) -> None: ...


class Access:
    """One admitted request: who (`caller`), what (`action`, `parameters`), and its one audit record."""

    def __init__(self, caller: Caller, writer: AuditWriter, action: str, parameters: dict[str, Any]) -> None:
        self.caller = caller
        self.action = action
        self.parameters = {k: _bounded(v) for k, v in parameters.items()}
        self._writer = writer
        self.recorded: AuditRecord | None = None

    def note(self, **parameters: Any) -> None:
        """Add parameters the record should carry beyond the URL's (a POSTed SQL text)."""
        self.parameters.update({k: _bounded(v) for k, v in parameters.items()})

    async def record(self, result_count: int | None, status: int = 200) -> None:
        """Write this request's audit record and return once Kafka has it; AuditUnavailable otherwise. Only one per
        request: a second call is a bug in the route, refused before anything is written."""
        if self.recorded is not None:
            raise RuntimeError(f"{self.action}: a second audit record for request {self.caller.request_id}")
        entry = self.caller.audit(self.action, self.parameters, result_count, status)
        self.recorded = entry  # set first: a failure to write is answered 503, never recorded again as another
        await self._writer.record(entry)


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_PARAMETER_CHARS:
        return value[:MAX_PARAMETER_CHARS] + f"… ({len(value)} characters)"
    return value
