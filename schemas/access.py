"""The read side's own events: who holds a token (Principal, on the compacted PREFIX.principals topic) and what
each request did (AuditRecord, on PREFIX.audit, kept forever). Both are JSON on Kafka and rows in ClickHouse,
so a replay of the topics rebuilds the `principals` and `audit_log` tables (DESIGN, read side).

A Principal never carries its token, only the token's SHA-256: the topic, the table and every listing can be
read without handing out a credential. Times are Unix milliseconds, as elsewhere in the archive's records.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["AuditRecord", "Principal", "new_audit_id", "now_ms"]


def now_ms() -> int:
    return int(time.time() * 1000)


def new_audit_id() -> str:
    """A random id for one audit record: it names the record across replays (the table collapses repeats by it)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Principal:
    """One token's holder and its current state; the latest event per `token_id` is the truth."""

    token_id: str               # public id: the first 12 hex digits of token_sha256; the Kafka key
    name: str                   # who or what holds the token ("scrm-backend", "alice")
    role: str                   # an access.roles.Role value
    token_sha256: str           # hex SHA-256 of the bearer token; the token itself is never stored
    created_at: int             # ms
    created_by: str             # "cli:alice", or the admin principal's name
    revoked_at: int | None = None  # ms; a revoked token is refused everywhere within seconds
    version: int = 0            # ms of this event: the table keeps the highest per token_id

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self, at_ms: int) -> Principal:
        """The revoke event of this principal: the same token, revoked at `at_ms`, a newer version."""
        return dataclasses.replace(self, revoked_at=at_ms, version=max(at_ms, self.version + 1))

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, value: bytes) -> Principal:
        """The principal of a record value, or ValueError saying what is wrong with it."""
        d = _object(value)
        return cls(token_id=_text(d, "token_id", required=True), name=_text(d, "name", required=True),
                   role=_text(d, "role", required=True), token_sha256=_text(d, "token_sha256", required=True),
                   created_at=_int(d, "created_at"), created_by=_text(d, "created_by"),
                   revoked_at=_optional_int(d, "revoked_at"), version=_int(d, "version"))


@dataclass(frozen=True)
class AuditRecord:
    """One request that read or changed archive content (or tokens): who, as what, did what, with what result.
    Written and acknowledged before the request is answered; a request that cannot be recorded is refused."""

    principal: str              # the principal's name; "cli:USER" for the CLI
    token_id: str               # "" when no token was involved (the CLI, an --insecure API)
    role: str
    action: str                 # what was done: "conversations.list", "sql.query", "tokens.create", …
    parameters: dict[str, Any] = field(default_factory=dict)  # the request's parameters, as given
    result_count: int | None = None  # rows or items returned or changed, when that means something
    status: int = 200           # the HTTP status of the answer (the CLI records what the API would have said)
    request_id: str = ""
    client: str = ""            # the caller's address as the API saw it ("127.0.0.1:52814"), "local" for the CLI
    time: int = field(default_factory=now_ms)  # ms; when the request was answered
    id: str = field(default_factory=new_audit_id)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, value: bytes) -> AuditRecord:
        """The audit record of a record value, or ValueError saying what is wrong with it."""
        d = _object(value)
        parameters = d.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError("parameters must be a JSON object")
        return cls(principal=_text(d, "principal", required=True), token_id=_text(d, "token_id"),
                   role=_text(d, "role"), action=_text(d, "action", required=True), parameters=parameters,
                   result_count=_optional_int(d, "result_count"), status=_int(d, "status"),
                   request_id=_text(d, "request_id"), client=_text(d, "client"), time=_int(d, "time"),
                   id=_text(d, "id", required=True))


def _object(value: bytes) -> dict[str, Any]:
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    return d


def _text(d: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = d.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    if required and not value:
        raise ValueError(f"{key} is missing or empty")
    return value


def _int(d: dict[str, Any], key: str) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative whole number")
    return value


def _optional_int(d: dict[str, Any], key: str) -> int | None:
    return None if d.get(key) is None else _int(d, key)
