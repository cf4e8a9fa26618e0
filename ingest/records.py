"""A record on its way to Kafka, as the edge builds it and the spool keeps it, and the dead letter a refused
body becomes (invariant 4: bad input gets a clear answer and is kept)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from wxarchive.topics import HEADER_VALUE_MAX_BYTES

__all__ = ["OutRecord"]

# headers a dead letter sets anew; a record dead-lettered twice keeps only the latest of each
_REFUSAL_HEADERS = frozenset({"wx-reason", "wx-status", "wx-stage", "wx-body-truncated"})


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


def clip(value: bytes, limit: int = HEADER_VALUE_MAX_BYTES) -> bytes:
    """A value a client sent, cut to `limit` bytes with its full length said, fit for a header or a log line."""
    return value if len(value) <= limit else value[:limit] + f"…({len(value)} bytes)".encode()


def dead_letter(topic: str, key: bytes, body: bytes, headers: tuple[tuple[str, bytes], ...], reason: str,
                status: int, keep_bytes: int) -> OutRecord:
    """A refused body as a dead-letter record: whole when it fits in `keep_bytes`, otherwise its first bytes
    marked truncated. The body's full length and SHA-256 (`wx-body-bytes`, `wx-sha256`) come from the caller's
    headers when it read more than it holds, else from `body`, so a cut body can still be matched with what
    the sender holds."""
    kept = body[:keep_bytes]
    given = dict(headers)
    refusal = [("wx-reason", clip(reason.encode())), ("wx-status", str(status).encode()), ("wx-stage", b"edge")]
    if "wx-body-bytes" not in given:
        refusal.append(("wx-body-bytes", str(len(body)).encode()))
    if "wx-sha256" not in given:
        refusal.append(("wx-sha256", hashlib.sha256(body).hexdigest().encode()))
    if len(kept) < max(len(body), int(given.get("wx-body-bytes", b"0"))):
        refusal.append(("wx-body-truncated", b"true"))
    return OutRecord(topic, key, kept, tuple(h for h in headers if h[0] not in _REFUSAL_HEADERS) + tuple(refusal))
