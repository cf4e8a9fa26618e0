"""The ingest edge as a bare ASGI application: POST /callback[/SECRET], /healthz, /readyz, /metrics.

No web framework: the edge does one thing on the hot path and measured fastest bare (docs/edge.md).
Order of checks on a callback: source address and secret first (a stranger gets 401/403 and nothing is
written), then size, content type and the payload itself (an authenticated sender's refused body goes to
the dead-letter topic with the reason), then the durable hand-off. Request paths carry the secret, so the
edge never logs them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from ingest.auth import Authenticator
from ingest.handoff import Delivery, KafkaHandoff
from ingest.metrics import EdgeMetrics
from ingest.records import OutRecord
from schemas.callback import PayloadError
from schemas.message import parse_message

log = logging.getLogger("wxarchive.edge")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ACCEPTED_BODY = orjson.dumps({"code": "1000", "message": "success", "data": None})
JSON_TYPES = (b"application/json", b"text/json")
DLQ_VALUE_LIMIT = 1024 * 1024  # the dead-letter topic takes up to 2 MiB; keep the first 1 MiB of a huge body


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
                await _answer(send, 200 if ready else 503, "ready" if ready else "Kafka is not reachable")
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
        _, outcome = await self._handle(scope, receive, send)
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
        declared = headers.get(b"content-length")
        body, size = await _read_body(receive, self.max_body)
        too_large = size > self.max_body or (declared is not None and declared.isdigit() and int(declared) > self.max_body)
        received_at = str(int(time.time() * 1000)).encode()
        meta = (("wx-received-at", received_at), ("wx-edge", self.edge_id), ("wx-remote", (remote or "").encode()),
                ("wx-sha256", hashlib.sha256(body).hexdigest().encode()))
        if too_large:
            return await self._refuse(send, 413, f"body larger than {self.max_body} bytes", body, meta, headers, size)
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            shown = content_type.decode("latin-1") or "none"
            return await self._refuse(send, 415, f"content type must be application/json, got {shown}", body, meta, headers)
        try:
            message = parse_message(body, with_xml=False)
        except PayloadError as exc:
            return await self._refuse(send, 400, exc.reason, body, meta, headers)
        if verdict.account is not None and message.account != verdict.account:
            await _answer(send, 403, "this secret does not admit that account")
            return 403, "rejected_auth"

        delivered = await self.handoff.deliver(OutRecord(self.raw_topic, message.kafka_key.encode(), body, meta))
        if delivered is Delivery.UNAVAILABLE:
            await _answer(send, 503, "archive temporarily unavailable; retry")
            return 503, "unavailable"
        await _respond(send, 200, ACCEPTED_BODY, b"application/json")
        return 200, "accepted" if delivered is Delivery.ACKED else "spooled"

    async def _refuse(self, send: Send, status: int, reason: str, body: bytes, meta: tuple[tuple[str, bytes], ...],
                      headers: dict[bytes, bytes], size: int | None = None) -> tuple[int, str]:
        """Keep an authenticated sender's refused body, with the reason, on the dead-letter topic."""
        record = OutRecord(self.dlq_topic, _account_hint(body), body[:DLQ_VALUE_LIMIT], meta + (
            ("wx-reason", reason.encode()), ("wx-status", str(status).encode()),
            ("wx-content-type", headers.get(b"content-type", b"")), ("wx-body-bytes", str(len(body) if size is None else size).encode())))
        if await self.handoff.deliver(record) is Delivery.UNAVAILABLE:
            self.metrics.dlq_lost.inc()
            log.error("a refused callback could not be kept: neither Kafka nor the spool took it",
                      extra={"reason": reason, "bytes": len(body)})
        else:
            self.metrics.dlq_written.inc()
        await _answer(send, status, reason)
        return status, "rejected_input"


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, int]:
    """The body's first `limit` bytes (the rest is read and dropped) and its full size."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk and size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks), size


def _query_secret(query: bytes) -> str | None:
    if not query:
        return None
    values = parse_qs(query.decode("latin-1")).get("secret")
    return values[0] if values else None


def _account_hint(body: bytes) -> bytes:
    """The wcId of a refused body, if it has one, as the dead-letter record's key."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return b""
    wc_id = doc.get("wcId") if isinstance(doc, dict) else None
    return wc_id.encode() if isinstance(wc_id, str) else b""


async def _answer(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    code = "1000" if status == 200 else "1001"
    await _respond(send, status, orjson.dumps({"code": code, "message": message, "data": None}), b"application/json", extra)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

