"""Property-based fuzzing of the edge: whatever a client sends, no crash and no 5xx but 503.

Requests go straight into the ASGI app (no sockets, so hypothesis can try many), whose hand-off writes
to the real broker. Bodies are random bytes or JSON shaped like callbacks with random field types.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from ingest.server import build_app
from schemas.callback import PayloadError
from schemas.message import parse_message
from tests.support import edge_settings
from wxarchive.config import Settings

ALLOWED = {200, 400, 401, 403, 404, 405, 413, 415, 503}
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
data_objects = st.dictionaries(
    st.sampled_from(["fromUser", "toUser", "fromGroup", "content", "newMsgId", "msgId", "self", "sel", "timestamp",
                     "atlist", "wId", "title", "msgType", "extra"]), json_values, max_size=8)
callbacks = st.fixed_dictionaries({}, optional={
    "wcId": st.one_of(st.text(min_size=1, max_size=20), json_values),
    "messageType": st.one_of(st.sampled_from(["60001", "80001", "60014", "85001", "00000", "30000", "99999"]), json_values),
    "account": json_values,
    "data": st.one_of(data_objects, json_values),
})
near_valid = st.fixed_dictionaries({
    "wcId": st.text(min_size=1, max_size=20),
    "messageType": st.sampled_from(["60001", "80001", "60014", "80002", "85001", "00000", "30000", "61234"]),
    "data": st.fixed_dictionaries({}, optional={
        "fromUser": st.text(max_size=20), "toUser": st.text(max_size=20), "fromGroup": st.text(max_size=30),
        "content": st.text(max_size=200), "newMsgId": st.one_of(st.integers(min_value=-(2**64), max_value=2**65), st.text(max_size=22)),
        "self": st.one_of(st.booleans(), st.sampled_from([0, 1, "true"])), "timestamp": st.integers(min_value=-5, max_value=2**45),
        "atlist": st.lists(st.text(max_size=10), max_size=3), "unknownField": json_values}),
})
# the stdlib encoder writes integers beyond 64 bits and escapes lone surrogates: both are inputs to survive
bodies = st.one_of(st.binary(max_size=3000), callbacks.map(lambda d: json.dumps(d).encode()),
                   near_valid.map(lambda d: json.dumps(d).encode()), near_valid.map(lambda d: json.dumps(d).encode()),
                   callbacks.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")))
requests = st.fixed_dictionaries({
    "method": st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    "path": st.sampled_from(["/callback/s3cret", "/callback/s3cret", "/callback", "/callback/wrong", "/callback/s3cret/x",
                             "/other", "/callback/" + "\u4e2d"]),
    "query": st.sampled_from([b"", b"secret=s3cret", b"secret=", b"secret=%ZZ", b"a=1&secret=s3cret&secret=x"]),
    "content_type": st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"TEXT/JSON", b"text/plain",
                                     b"", b"application/x-www-form-urlencoded", b"\xff\xfe"]),
    "body": bodies,
    "chunks": st.integers(min_value=1, max_value=4),
    "length_header": st.sampled_from(["right", "none", "lie", "junk"]),
})


def test_random_requests_never_crash_the_edge(settings: Settings) -> None:
    app = build_app(edge_settings(settings, edge_max_body_bytes=2048))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(app.handoff.start())
    statuses: dict[int, int] = {}

    async def call(req: dict[str, Any]) -> int:
        body: bytes = req["body"]
        size = max(1, len(body) // req["chunks"] + 1)
        parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
        messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
        headers = [(b"content-type", req["content_type"])] if req["content_type"] else []
        length = {"right": str(len(body)).encode(), "lie": b"99999999", "junk": b"-x", "none": None}[req["length_header"]]
        if length is not None:
            headers.append((b"content-length", length))
        scope = {"type": "http", "method": req["method"], "path": req["path"], "query_string": req["query"],
                 "headers": headers, "client": ("127.0.0.1", 50000)}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        orjson.loads(sent[1]["body"])  # every answer is JSON or the metrics text
        return int(sent[0]["status"])

    # derandomized: CI runs the same 400 requests every time, so a failure reproduces and a pass means the same
    @hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                         derandomize=True)
    @given(requests)
    def check(req: dict[str, Any]) -> None:
        status = loop.run_until_complete(call(req))
        statuses[status] = statuses.get(status, 0) + 1
        assert status in ALLOWED
        if status == 200:  # only what the archive can read is acknowledged
            try:
                parse_message(req["body"])
            except PayloadError as exc:
                raise AssertionError(f"acknowledged a body the archive refuses: {exc.reason}") from None

    try:
        check()
    finally:
        loop.run_until_complete(app.handoff.stop())
        loop.close()
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0  # the fuzzer reached both sides
