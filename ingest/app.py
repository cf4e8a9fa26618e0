"""The ingest edge as a bare ASGI application: POST /callback[/SECRET], /healthz, /readyz, /metrics.

No web framework: the edge does one thing on the hot path and measured fastest bare (docs/edge.md).
Order of checks on a callback: source address and secret first (a stranger gets 401/403 and nothing is
written), then size, content type and the payload itself (an authenticated sender's refused body goes to
the dead-letter topic with the reason, keyed by the account its secret admits, never by what the body
claims), then the account a per-account secret admits, then the durable hand-off. A refused body that
cannot be kept gets 503, never a 4xx with nothing kept (invariant 4); a body cut short by a disconnect is
never archived; an unexpected error is a 503, never a 500. Request paths carry the secret, so the edge
never logs them, and nothing a client sent is echoed whole into an answer or a log line.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from ingest.auth import Authenticator
from ingest.handoff import Delivery, KafkaHandoff, RecordRefused
from ingest.metrics import EdgeMetrics
from ingest.records import OutRecord, clip, dead_letter
from schemas.callback import PayloadError
from schemas.message import parse_message

__all__ = ["ACCEPTED_BODY", "EdgeApp", "READ_CAP_FACTOR"]

log = logging.getLogger("wxarchive.edge")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ACCEPTED_BODY = orjson.dumps({"code": "1000", "message": "success", "data": None})
JSON_TYPES = (b"application/json", b"text/json")
READ_CAP_FACTOR = 2  # a body over the limit is read (and hashed) up to twice the limit, then refused unread


class EdgeApp:
    def __init__(self, handoff: KafkaHandoff, auth: Authenticator, metrics: EdgeMetrics, edge_id: str,
                 max_body: int, raw_topic: str, dlq_topic: str) -> None:
        self.handoff = handoff
        self.raw_topic = raw_topic
        self.dlq_topic = dlq_topic
        self.auth = auth
        self.metrics = metrics
        self.edge_id = edge_id.encode()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == "/callback" or path.startswith("/callback/"):
                if scope["method"] != "POST":
                    await _answer(send, 405, "use POST", extra=[(b"allow", b"POST")])
                else:
                    await self._callback(scope, receive, send)
            elif path == "/healthz":
                await _answer(send, 200, "alive")
            elif path == "/readyz":
                ready = self.handoff.ready
                await _answer(send, 200 if ready else 503, "ready" if ready else self.handoff.not_ready_reason)
            elif path == "/metrics":
                await _respond(send, 200, self.metrics.exposition(), b"text/plain; version=0.0.4")
            else:
                await _answer(send, 404, "not found")
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.handoff.start()
                except Exception as exc:  # reported to the server, which refuses to start
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.handoff.stop()
                except Exception:
                    log.exception("the edge did not shut down cleanly")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        answered = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = True
            await send(message)

        outcome = "error"
        try:
            _, outcome = await self._handle(scope, receive, tracked)
        except Exception:
            # a bug, not the sender's fault: 503 makes E云 send it again, and nothing is lost meanwhile
            log.exception("a callback could not be handled; answered 503")
            if not answered:
                await _answer(send, 503, "archive temporarily unavailable; retry")
        finally:
            self.metrics.requests[outcome].inc()
            self.metrics.latency.observe(time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> tuple[int, str]:
        client = scope.get("client")
        remote = client[0] if client else None
        secret = scope["path"][len("/callback/"):] or _query_secret(scope.get("query_string", b""))
        verdict = self.auth.check(remote, secret)
        if not verdict.ok:
            await _answer(send, verdict.status, verdict.reason)
            return verdict.status, "rejected_auth"

        headers = dict(scope["headers"])
        body = await _read_body(receive, self.max_body, _declared_length(headers))
        if body.disconnected:
            return 499, "aborted"  # cut short: never archived; the sender got no answer and sends it again
        received_at = str(int(time.time() * 1000)).encode()
        meta = (("wx-received-at", received_at), ("wx-edge", self.edge_id), ("wx-remote", (remote or "").encode()),
                ("wx-sha256", body.sha256.encode()))
        # what a refused body is keyed by: the account the secret admits, never what the body claims
        key = (verdict.account or "").encode()
        if body.size > self.max_body:
            return await self._refuse(send, 413, f"body larger than {self.max_body} bytes", key, body, meta, headers)
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            shown = clip(content_type, 64).decode("latin-1") or "none"
            return await self._refuse(send, 415, f"content type must be application/json, got {shown}", key, body,
                                      meta, headers)
        try:
            message = parse_message(body.data, with_xml=False)
        except PayloadError as exc:
            return await self._refuse(send, 400, exc.reason, key, body, meta, headers)
        except Exception as exc:  # the parser's bug must not lose the body: keep it with the reason
            log.exception("the parser failed on a callback; kept as a dead letter")
            return await self._refuse(send, 400, f"body could not be parsed ({type(exc).__name__})", key, body, meta,
                                      headers)
        if verdict.account is not None and message.account != verdict.account:
            await _answer(send, 403, "this secret does not admit that account")
            return 403, "rejected_auth"

        record = OutRecord(self.raw_topic, message.kafka_key.encode(), body.data, meta)
        try:
            delivered = await self.handoff.deliver(record)
        except RecordRefused as exc:  # not within the size every topic takes: only a misconfiguration gets here
            return await self._refuse(send, 413, f"Kafka refused the record: {exc.reason}", key, body, meta, headers)
        if delivered is Delivery.UNAVAILABLE:
            await _answer(send, 503, "archive temporarily unavailable; retry")
            return 503, "unavailable"
        await _respond(send, 200, ACCEPTED_BODY, b"application/json")
        return 200, "accepted" if delivered is Delivery.ACKED else "spooled"

    async def _refuse(self, send: Send, status: int, reason: str, key: bytes, body: Body,
                      meta: tuple[tuple[str, bytes], ...], headers: dict[bytes, bytes]) -> tuple[int, str]:
        """Keep an authenticated sender's refused body, with the reason, on the dead-letter topic; if it cannot be
        kept, answer 503 so that E云 sends it again: never a 4xx with nothing kept."""
        meta = meta + (("wx-content-type", clip(headers.get(b"content-type", b""))),
                       ("wx-body-bytes", str(body.size).encode()))
        if not body.complete:
            meta = meta + (("wx-sha256-of", f"the first {body.read} bytes".encode()),)
        letter = dead_letter(self.dlq_topic, key, body.data, meta, reason, status, self.max_body)
        if await self.handoff.keep_refused(letter) is Delivery.UNAVAILABLE:
            await _answer(send, 503, "archive temporarily unavailable; retry")
            return 503, "unavailable"
        self.metrics.dlq_written.inc()
        # a body not read to its end leaves the connection mid-request: close it rather than read on
        await _answer(send, status, reason, extra=None if body.complete else [(b"connection", b"close")])
        return status, "rejected_input"


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes         # the first `limit` bytes
    size: int           # bytes the sender sent (or declared, when it was not read to its end)
    sha256: str         # of everything read
    read: int           # bytes read
    complete: bool      # read to its end
    disconnected: bool  # the sender went away before the end: nothing of it may be archived


async def _read_body(receive: Receive, limit: int, declared: int | None) -> Body:
    """The body's first `limit` bytes, its size and hash. Past the limit, reading goes on only up to
    READ_CAP_FACTOR times it, so that the dead letter of a body slightly over carries its full length and
    hash; of a body declared larger than that, only the first `limit` bytes are read (413 at once)."""
    digest = hashlib.sha256()
    stop_after = limit if declared is not None and declared > limit * READ_CAP_FACTOR else limit * READ_CAP_FACTOR
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return Body(b"", size, "", size, False, True)
        chunk = message.get("body", b"")
        if chunk:
            if size < limit:
                chunks.append(chunk[: limit - size])
            size += len(chunk)
            digest.update(chunk)
        if not message.get("more_body"):
            return Body(b"".join(chunks), size, digest.hexdigest(), size, True, False)
        if size >= stop_after:
            return Body(b"".join(chunks), max(size, declared or 0), digest.hexdigest(), size, False, False)


def _declared_length(headers: dict[bytes, bytes]) -> int | None:
    declared = headers.get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() and len(declared) < 19 else None


def _query_secret(query: bytes) -> str | None:
    if not query:
        return None
    values = parse_qs(query.decode("latin-1")).get("secret")
    return values[0] if values else None


async def _answer(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    code = "1000" if status == 200 else "1001"
    await _respond(send, status, orjson.dumps({"code": code, "message": message, "data": None}), b"application/json", extra)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

