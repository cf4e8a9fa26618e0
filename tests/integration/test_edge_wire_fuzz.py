"""Hypothesis fuzzing of whole requests on the wire, heads and bodies together (issue 11).

Why this exists: tests/integration/test_edge_fuzz.py hands requests to the ASGI app, so it never reaches the
request head parser, the limits of ingest/protocol.py, pipelining, framing, or Kafka. Here the real edge (uvicorn
with the guarded httptools protocol, the default limits, the hand-off to the session's broker) runs in-process
and hypothesis writes whole connections to it over TCP: request lines (methods, paths with and without the
secret, the query secret, odd bytes, targets near and past the limit, HTTP/1.0, 1.1 and bad versions), header
sets (content types, Content-Length right, missing, lying, repeated or junk, chunked bodies framed well and
badly, Connection, Expect: 100-continue, headers and heads near and past the limits, odd bytes, obs-fold) and
bodies (valid callbacks with unique newMsgIds, the near-valid and hostile bodies of the other fuzz tests, random
bytes), sometimes several requests pipelined, sometimes the connection cut short. Derandomized: CI sends the same
connections every run, so a failure reproduces and a pass means the same each time.

Which bytes make which request is decided by a second parser of the kind the edge runs (httptools, with the
leniency uvicorn sets), fed the same bytes: the n-th answer on a connection answers the n-th request it completes.
With that, the test asserts:

- every answer is a well-formed HTTP response, and none is 5xx but 503;
- every request the parser completed is answered, unless an earlier answer closed the connection; a connection
  closes without an answer only after a cut or invalid request, and an answer never arrives in another's place;
- a head past a limit of docs/edge.md (target, one header, header count, whole head) gets 414/431 and never
  reaches the app; a head within every limit is never refused for its size;
- every body answered 200 is in the raw topic byte for byte, and no body cut short by a disconnect is there
  unless it was also answered 200 elsewhere;
- no exception escapes the app (uvicorn answers 500 to one, unless the socket is already shut);
- the run reached 200s, 400s, 401/403s, 413s and 414/431s, cut and pipelined connections: it cannot pass vacuously.

Hypothesis does not shrink here: shrinking replays connections against the edge for minutes. A failure prints its
connection, and the derandomized run reproduces it. What the fuzzer found is kept below, each fault reduced by
hand to one connection, in test_what_the_fuzzer_found.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httptools
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings, strategies as st

import tests.integration.test_edge_fuzz as app_fuzz
import tests.unit.test_payload_hostile as hostile_bodies
from ingest.app import ACCEPTED_BODY, READ_CAP_FACTOR
from ingest.protocol import (
    BAD_REQUEST,
    BODY_TIMEOUT,
    BUSY,
    EVICTED,
    FULL,
    HEAD_TIMEOUT,
    HEAD_TOO_LARGE,
    HEADER_TOO_LARGE,
    TOO_MANY_HEADERS,
    UPGRADE,
    URL_TOO_LONG,
    Refusal,
)
from tests.fixtures.callbacks import NO_GROUP_VARIANT, PRIVATE, chat_callback
from tests.integration.test_edge_hostile import RawClient
from tests.support import edge_settings, read_topic, running_edge
from wxarchive.config import Settings
from wxarchive.topics import RAW

T = TypeVar("T")

DEFAULTS = Settings.load(env={})  # the real default limits, which the edge under test keeps
MAX_BODY = DEFAULTS.edge_max_body_bytes
MAX_URL = DEFAULTS.edge_max_url_bytes
MAX_HEADER = DEFAULTS.edge_max_header_bytes
MAX_HEADERS = DEFAULTS.edge_max_headers
MAX_HEAD = DEFAULTS.edge_max_head_bytes

MAX_EXAMPLES = 800   # connections: about 15 s on a busy 2-core machine
ANSWER_SECONDS = 15  # longer than the edge's own timeouts (10 s): a 408 is seen, and a hang fails here
LIMIT_REFUSALS = {(r.status, r.reason) for r in (URL_TOO_LONG, HEADER_TOO_LARGE, HEAD_TOO_LARGE, TOO_MANY_HEADERS)}
CAPACITY_REFUSALS = {(r.status, r.reason) for r in (BUSY, FULL, EVICTED)}
# answers that belong to no request the parser completed: one in a completed request's place is out of order
STRAY_REFUSALS: dict[tuple[int, str], Refusal] = {(r.status, r.reason): r for r in (BAD_REQUEST, UPGRADE, HEAD_TIMEOUT,
                                                                                   BODY_TIMEOUT)}
_ids = itertools.count(8 * 10**17)  # newMsgIds of valid callbacks: unique in the run, so each can be found later


# -- what is sent ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Payload:
    data: bytes
    unique_id: int | None = None  # set for a valid callback made here


@dataclass(frozen=True)
class Wire:
    """One request as written: its head (request line to the blank line) and its body as framed."""
    head: bytes
    body: bytes
    payload: Payload

    def __repr__(self) -> str:  # hypothesis prints falsifying connections: keep megabyte bodies short
        return f"Wire(head={_short(self.head, 400)}, body={_short(self.body, 400)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # what hypothesis's printer asks a value for
        printer.text(repr(self))


@dataclass(frozen=True)
class Connection:
    requests: tuple[Wire, ...]
    pipelined: bool  # all in one write; else each request after the answers to what came before it

    def pieces(self) -> list[tuple[bytes, bytes]]:
        return [(w.head, w.body) for w in self.requests]


def _short(data: bytes, keep: int = 160) -> str:
    return repr(data) if len(data) <= keep else f"{data[:keep]!r}...<{len(data)} bytes>"


def _valid_callback(code: str, group: bool, self_sent: bool, size: int | None) -> Payload:
    """A real callback with a newMsgId no other request of the run has, its content padded to `size` bytes."""
    doc = chat_callback(code, group=group, self_sent=self_sent)
    unique = next(_ids)
    doc["data"]["newMsgId"] = unique
    raw = orjson.dumps(doc)
    if size is not None and size > len(raw):
        doc["data"]["content"] += "x" * (size - len(raw))
        raw = orjson.dumps(doc)
    return Payload(raw, unique)


@st.composite
def valid_callbacks(draw: st.DrawFn, sizes: tuple[int, ...] = ()) -> Payload:
    """A valid callback with a unique newMsgId; of one of `sizes` if given (at the body limit, past it, past the
    read cap)."""
    code = draw(st.sampled_from(sorted(PRIVATE)))
    group = code not in NO_GROUP_VARIANT and draw(st.booleans())
    return _valid_callback(code, group, draw(st.booleans()), draw(st.sampled_from(sizes)) if sizes else None)


def _header(name: bytes) -> Callable[[bytes], list[tuple[bytes, bytes]]]:
    return lambda value: [(name, value)]


SEPARATORS = st.sampled_from([b" ", b"", b"  ", b"\t"])
ODD_NAMES = st.one_of(st.sampled_from([b"X-Odd", b"X Odd", b"X-\x01", b"\xff", b"", b"X-Odd:", b"Content-Length ",
                                       b"Transfer-Encoding ", b"X-Forwarded-For", b"Host", b"\xe4\xb8\xad"]),
                      st.binary(max_size=10))
ODD_VALUES = st.one_of(st.sampled_from([b"\x00", b"a\x7fb", b"\xff\xfe", b"  spaced  ", b"a\r\n folded",
                                        b"a\r\n\tfolded", b"\ttab", b"10.9.9.9", b"a\rb", b"a\nb"]),
                       st.binary(max_size=24))
JUNK_LENGTHS = st.sampled_from([b"-1", b"x", b"1e3", b"+5", b" 5", b"0x10", b"99999999999999999999999", b"",
                                b"5, 5", b"5 5", b"\xff"])
ODD_PATHS = st.sampled_from([b"/callback", b"/callback", b"/callback/", b"/callback/wrong", b"/callback/wrong",
                             b"/callback/s3cret/x", b"/callback/S3CRET",
                             b"/callback/%73%33cret", b"/callback/s3cret%00", b"/healthz", b"/readyz", b"/other", b"*",
                             b"http://edge/callback/s3cret", b"//callback/s3cret", b"/callback/s3cret\x7f",
                             b"/callback/\xe4\xb8\xad", b"/callback/s3cret#top", b"", b"/callback/s3cret"])
ODD_QUERIES = st.sampled_from([b"", b"?secret=s3cret", b"?secret=wrong", b"?secret=", b"?secret=%ZZ",
                               b"?a=1&secret=s3cret&secret=x", b"?", b"?secret=s3cret&x=\xff"])


@st.composite
def odd_targets(draw: st.DrawFn) -> bytes:
    """A request target with or without the secret, in the path or the query, perhaps with odd bytes in it."""
    target = draw(ODD_PATHS) + draw(ODD_QUERIES)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(target)))
        target = target[:at] + draw(st.binary(min_size=1, max_size=6)) + target[at:]
    return target


# Each part of a request: how a sender that follows docs/edge.md writes it, and how else it may come. A request
# takes a few parts (often none) the other way, so that most requests are near enough to valid to go deep.
PARTS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "method": (st.just(b"POST"), st.sampled_from([b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT",
                                                   b"post", b"PO\x00ST", b"BREW", b"POST "])),
    "target": (st.sampled_from([b"/callback/s3cret", b"/callback/s3cret", b"/callback?secret=s3cret"]), odd_targets()),
    "target size": (st.none(), st.sampled_from(["at", "over", "huge"])),
    "version": (st.just(b"HTTP/1.1"), st.sampled_from([b"HTTP/1.0", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9",
                                                       b"HTTP/1", b"http/1.1", b"HTTPS/1.1", b"HTTP/1.1 x", b""])),
    "line end": (st.just(b"\r\n"), st.just(b"\n")),
    "host": (st.just([(b"Host", b"edge")]), st.sampled_from([[], [(b"Host", b"edge")] * 2, [(b"Host", b"")]])),
    "content type": (st.sampled_from([b"application/json", b"application/json; charset=utf-8"]).map(_header(b"Content-Type")),
                     st.one_of(st.just([]), st.just([(b"Content-Type", b"application/json")] * 2),
                               st.sampled_from([b"TEXT/JSON", b"text/json;", b"text/plain", b"", b"application/jsonx",
                                                b"application/x-www-form-urlencoded", b"\xff\xfe", b" application/json ",
                                                b"application/json\x00"]).map(_header(b"Content-Type")))),
    "connection": (st.sampled_from([[], [], [(b"Connection", b"keep-alive")]]),
                   st.sampled_from([b"close", b"Keep-Alive", b"close, keep-alive", b"TE", b"Upgrade", b"\xff"]).map(
                       lambda v: [(b"Connection", v)] + ([(b"Upgrade", b"websocket")] if v == b"Upgrade" else []))),
    "expect": (st.sampled_from([[], [], [(b"Expect", b"100-continue")]]),
               st.sampled_from([b"100-Continue", b"200-ok", b""]).map(_header(b"Expect"))),
    "extra headers": (st.just([]), st.lists(st.tuples(ODD_NAMES, ODD_VALUES), min_size=1, max_size=3)),
    "separator": (st.just(b" "), SEPARATORS),
    "framing": (st.sampled_from(["length", "length", "length", "chunked"]),
                st.sampled_from(["none", "short", "long", "double", "double-different", "junk", "chunked-extended",
                                 "chunked-broken", "chunked-broken", "chunked-broken", "chunked-and-length",
                                 "transfer-encoding-other"])),
    "head size": (st.none(), st.sampled_from(["header-at", "header-over", "count-at", "count-over", "head-at",
                                              "head-over", "head-huge"])),
    "body": (valid_callbacks(), st.one_of(
        *[valid_callbacks((MAX_BODY, MAX_BODY + 1, READ_CAP_FACTOR * MAX_BODY + 1))] * 3,
        app_fuzz.bodies.map(Payload),  # random bytes, callback-shaped and near-valid JSON
        hostile_bodies.bodies.map(Payload), hostile_bodies.real_callbacks_with_a_hostile_field().map(Payload),
        st.just(Payload(b"")))),
}


# the parts that reach deepest are drawn the unusual way more often: framing, sizes, body, target
UNUSUAL_PARTS = st.sampled_from(sorted(PARTS) + ["framing"] * 3 + ["head size", "body", "target", "target size"])


def _padded_target(target: bytes, size: str | None) -> bytes:
    """The target padded to the target limit, one byte past it, or past the whole head's limit."""
    if size is None:
        return target
    target += b"&pad=" if b"?" in target else b"?pad="
    length = {"at": MAX_URL, "over": MAX_URL + 1, "huge": 3 * MAX_HEAD}[size]
    return target + b"a" * max(0, length - len(target))


def _chunked(draw: st.DrawFn, body: bytes, extended: bool = False) -> bytes:
    """`body` in chunks of drawn sizes; `extended`: chunk extensions, odd hex spellings and a trailer."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(body)), max_size=4))))
    parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
    size = draw(st.sampled_from([b"%x", b"%X", b"%04x"])) if extended else b"%x"
    ext = b";ext=1" if extended else b""
    trailer = b"X-Trailer: 1\r\n" if extended else b""
    return b"".join(size % len(p) + ext + b"\r\n" + p + b"\r\n" for p in parts) + b"0\r\n" + trailer + b"\r\n"


def _broken_chunked(draw: st.DrawFn, body: bytes) -> bytes:
    """Chunked framing broken one way: a bad size, sizes that do not match the data, missing line ends, no end."""
    good = _chunked(draw, body)
    first = good.index(b"\r\n")
    kind = draw(st.sampled_from(["bad-size", "short", "long", "no-crlf", "no-last", "overflow", "negative", "lf",
                                 "space"]))
    if kind == "bad-size":
        return b"zz" + good[first:]
    if kind == "short":
        return b"%x" % max(0, len(body) - 1) + b"\r\n" + body + b"\r\n0\r\n\r\n"
    if kind == "long":
        return b"%x" % (len(body) + 10) + b"\r\n" + body + b"\r\n0\r\n\r\n"
    if kind == "no-crlf":
        return b"%x\r\n" % len(body) + body + b"0\r\n\r\n"
    if kind == "no-last":
        return good[: -len(b"0\r\n\r\n")]
    if kind == "overflow":
        return b"1" + b"0" * 17 + good[first:]
    if kind == "negative":
        return b"-1" + good[first:]
    if kind == "lf":
        return good.replace(b"\r\n", b"\n")
    return good[:first] + b" " + good[first:]


def _framed(draw: st.DrawFn, framing: str, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The framing headers and the bytes on the wire for `body`."""
    length = b"%d" % len(body)
    if framing == "length":
        return [(b"Content-Length", length)], body
    if framing == "none":
        return [], body
    if framing == "short":
        return [(b"Content-Length", b"%d" % draw(st.integers(0, max(0, len(body) - 1))))], body
    if framing == "long":
        return [(b"Content-Length", b"%d" % (len(body) + draw(st.integers(1, 100))))], body
    if framing == "double":
        return [(b"Content-Length", length), (b"Content-Length", length)], body
    if framing == "double-different":
        return [(b"Content-Length", length), (b"Content-Length", b"%d" % (len(body) + 1))], body
    if framing == "junk":
        return [(b"Content-Length", draw(JUNK_LENGTHS))], body
    te = [(b"Transfer-Encoding", b"chunked")]
    if framing == "chunked":
        return te, _chunked(draw, body)
    if framing == "chunked-extended":
        return te, _chunked(draw, body, extended=True)
    if framing == "chunked-broken":
        return te, _broken_chunked(draw, body)
    if framing == "chunked-and-length":
        return te + [(b"Content-Length", length)], _chunked(draw, body)
    coding = draw(st.sampled_from([b"gzip, chunked", b"identity", b"chunked, gzip", b"Chunked", b"chunked ", b"x"]))
    return [(b"Transfer-Encoding", coding)], _chunked(draw, body)


def _padding(deficit: int, eol: bytes) -> list[bytes]:
    """Header lines of exactly `deficit` bytes in all (each within the header limit), when it can be done."""
    lines = []
    for i in itertools.count():
        if deficit <= 0:
            break
        name = b"X-Pad%d" % i
        fixed = len(name) + 2 + len(eol)  # ": " and the line end
        most = MAX_HEADER - len(name) - 64
        value = deficit - fixed
        if value < 0:
            break  # too few bytes left for a header line: the head ends a little short of the mark
        if value > most:
            value = most if deficit - fixed - most >= fixed + 8 else most - 32
        lines.append(name + b": " + b"p" * value)
        deficit -= fixed + value
    return lines


def _sized(size: str | None, line: bytes, lines: list[bytes], eol: bytes) -> list[bytes]:
    """`lines` with headers added to bring one header, the header count or the whole head to a limit or past it."""
    if size is None:
        return lines
    if size in ("header-at", "header-over"):
        name = b"X-Big"
        return lines + [name + b": " + b"b" * (MAX_HEADER - len(name) + (size == "header-over"))]
    if size in ("count-at", "count-over"):
        return lines + [b"X-F%d: 1" % i for i in range(MAX_HEADERS - len(lines) + (size == "count-over"))]
    target = {"head-at": MAX_HEAD, "head-over": MAX_HEAD + 1, "head-huge": 4 * MAX_HEAD}[size]
    used = len(line) + sum(len(x) + len(eol) for x in lines) + len(eol)
    return lines + _padding(target - used, eol)


@st.composite
def wire_requests(draw: st.DrawFn) -> Wire:
    """A request with none, one or a few of its PARTS written the unusual way."""
    unusual = set(draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3]).flatmap(
        lambda n: st.lists(UNUSUAL_PARTS, min_size=n, max_size=n, unique=True))))

    def part(name: str) -> Any:
        usual, other = PARTS[name]
        return draw(other if name in unusual else usual)

    eol, version, payload = part("line end"), part("version"), part("body")
    target = _padded_target(part("target"), part("target size"))
    line = part("method") + b" " + target + (b" " + version if version else b"") + eol
    framing, body = _framed(draw, part("framing"), payload.data)
    headers = part("host") + part("content type") + part("connection") + part("expect") + part("extra headers")
    headers = list(draw(st.permutations(headers + framing)))
    lines = [name + b":" + part("separator") + value for name, value in headers]
    return _wire(line, _sized(part("head size"), line, lines, eol), eol, body, payload)


def _wire(line: bytes, lines: list[bytes], eol: bytes, body: bytes, payload: Payload) -> Wire:
    return Wire(line + b"".join(x + eol for x in lines) + eol, body, payload)


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    """One to three requests on a connection, pipelined or one after the other; the last one maybe cut short."""
    wires = [draw(wire_requests()) for _ in range(draw(st.sampled_from([1, 1, 2, 2, 3])))]
    cut = draw(st.sampled_from(["none"] * 5 + ["body", "body", "head"]))
    last = wires[-1]
    if cut == "body" and last.body:
        wires[-1] = Wire(last.head, last.body[: draw(st.integers(0, len(last.body) - 1))], last.payload)
    elif cut == "head" and len(last.head) > 1:
        wires[-1] = Wire(last.head[: draw(st.integers(1, len(last.head) - 1))], b"", last.payload)
    return Connection(tuple(wires), draw(st.booleans()))


# -- what the edge's parser makes of it -----------------------------------------------------------------------------

class StopParsing(Exception):
    """An upgrade: the edge refuses it at the end of its head and reads no further."""


@dataclass
class Message:
    """One request as the parser sees it, and whether it breaks a limit of docs/edge.md."""
    url: bytes = b""
    method: bytes = b""
    body: bytearray = field(default_factory=bytearray)
    headers: int = 0
    head_done: bool = False
    complete: bool = False
    over_in_head: bool = False      # the edge must refuse it for its size (414/431)
    over_in_trailer: bool = False   # the edge may refuse it for its size: a trailer past a limit
    request: int | None = None      # the index of the request whose bytes begin it, if one does
    head_bytes: int | None = None   # its head's length, known when it is that request's head exactly

    @property
    def callback(self) -> bool:
        """A POST to /callback, the path read as uvicorn reads it (an absolute-form target has one too)."""
        try:
            path = httptools.parse_url(self.url).path or b""
        except httptools.HttpParserInvalidURLError:
            return False
        return self.method == b"POST" and (path == b"/callback" or path.startswith(b"/callback/"))


class Parse:
    """What the edge's parser makes of a connection's bytes: httptools with the leniency uvicorn sets (data after a
    `Connection: close` request is ignored), fed the same bytes request by request."""

    def __init__(self, conn: Connection) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.messages: list[Message] = []
        self.stopped = False  # input the edge refuses as not HTTP, or an upgrade: it answers 400 and reads no more
        self.complete_after: list[int] = []  # complete requests once each request's bytes are in
        for index, (head, body) in enumerate(conn.pieces()):
            between = all(m.complete for m in self.messages)
            begun = len(self.messages)
            self._feed(head[:-1])
            head_open = len(self.messages) > begun and not self.messages[begun].head_done
            self._feed(head[-1:])
            if between and len(self.messages) > begun:
                first = self.messages[begun]
                first.request = index
                if head_open and first.head_done:
                    first.head_bytes = len(head)
                    first.over_in_head |= len(head) > MAX_HEAD
            self._feed(body)
            self.complete_after.append(self.complete)

    @property
    def complete(self) -> int:
        return sum(m.complete for m in self.messages)

    @property
    def unfinished(self) -> Message | None:
        """The request the connection ends inside, if it does (the edge waits for the rest)."""
        last = self.messages[-1] if self.messages else None
        return last if last is not None and not last.complete and not self.stopped else None

    def _feed(self, data: bytes) -> None:
        if self.stopped or not data:
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.stopped = True

    # the parser's callbacks

    def on_message_begin(self) -> None:
        self.messages.append(Message())

    def on_url(self, url: bytes) -> None:
        m = self.messages[-1]
        m.url += url
        m.over_in_head |= len(m.url) > MAX_URL

    def on_header(self, name: bytes, value: bytes) -> None:
        m = self.messages[-1]
        m.headers += 1
        over = len(name) + len(value) > MAX_HEADER or m.headers > MAX_HEADERS
        if m.head_done:
            m.over_in_trailer |= over
        else:
            m.over_in_head |= over

    def on_headers_complete(self) -> None:
        m = self.messages[-1]
        m.head_done, m.method = True, self.parser.get_method()
        if self.parser.should_upgrade():
            raise StopParsing()

    def on_body(self, body: bytes) -> None:
        self.messages[-1].body += body

    def on_message_complete(self) -> None:
        self.messages[-1].complete = True


# -- what comes back ------------------------------------------------------------------------------------------------

STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5]\d\d) [^\r\n]*")
HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([^\r\n]*)")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def closes(self) -> bool:
        return b"close" in [t.strip() for t in self.headers.get(b"connection", b"").lower().split(b",")]

    @property
    def message(self) -> str | None:
        """The reason of an answer in the edge's JSON shape."""
        if not self.headers.get(b"content-type", b"").startswith(b"application/json"):
            return None
        return str(orjson.loads(self.body)["message"]) if self.body else None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {_short(self.body, 100)})"


class WireClient(RawClient):
    """test_edge_hostile's raw client (which keeps what the edge sent even when a reset follows) that also wakes its
    waiters when more arrives, and reads answers one after another off what it keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: list[asyncio.Future[None]] = []
        self.read = 0  # bytes of `data` taken by the answers read so far

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.wake()

    def eof_received(self) -> bool:
        self.wake()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.wake()

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    async def more(self, what: str) -> None:
        """Wait until something arrives (or an answer is read); registered at once, so no wake-up is missed."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, ANSWER_SECONDS)
        except TimeoutError:
            raise AssertionError(f"no {what} within {ANSWER_SECONDS} s: the edge hangs") from None

    async def next_answer(self, to_head: bool) -> Answer | None:
        """The next answer, 1xx answers checked and skipped; None if the connection ended without one."""
        while True:
            end = self.data.find(b"\r\n\r\n", self.read)
            if end < 0:
                if self.done.done():
                    assert self.read == len(self.data), f"a truncated answer: {_short(bytes(self.data[self.read:]))}"
                    return None
                await self.more("answer")
                continue
            lines = bytes(self.data[self.read:end]).split(b"\r\n")
            status_line = STATUS_LINE.fullmatch(lines[0])
            assert status_line, f"not an HTTP/1.1 status line: {_short(lines[0])}"
            status = int(status_line.group(1))
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                header = HEADER_LINE.fullmatch(line)
                assert header, f"not a header line: {_short(line)}"
                headers[header.group(1).lower()] = header.group(2)
            assert not 500 <= status <= 599 or status == 503, f"answered {status}: {_short(bytes(self.data))}"
            start = end + 4
            if status < 200:
                assert b"content-length" not in headers, f"a {status} answer with a body"
                self.read = start
                continue
            length = headers.get(b"content-length", b"")
            assert length.isdigit(), f"an answer without a length: {_short(lines[0])} {headers}"
            size = int(length)
            if to_head:  # uvicorn sends no body to HEAD; the protocol's refusals do, then close
                size = await self._rest(start, size) if Answer(status, headers, b"").closes else 0
            while len(self.data) < start + size and not self.done.done():
                await self.more("answer body")
            assert len(self.data) >= start + size, f"the edge closed mid-answer: {_short(bytes(self.data))}"
            self.read = start + size
            answer = Answer(status, headers, bytes(self.data[start:self.read]))
            if answer.headers.get(b"content-type", b"").startswith(b"application/json") and (size or not to_head):
                doc = orjson.loads(answer.body)
                assert set(doc) == {"code", "message", "data"}, f"not the edge's JSON shape: {answer.body!r}"
            return answer

    async def _rest(self, start: int, size: int) -> int:
        """An answer to HEAD that closes the connection: its body, if the edge sent one, is all that follows."""
        while not self.done.done():
            await self.more("end of connection")
        rest = len(self.data) - start
        assert rest in (0, size), f"{rest} bytes after an answer to HEAD that says {size}"
        return rest

    async def finish(self, to_head: bool) -> list[Answer]:
        """The answers that still come until the edge closes the connection."""
        extra = []
        while (answer := await self.next_answer(to_head)) is not None:
            extra.append(answer)
        return extra


# -- one connection -------------------------------------------------------------------------------------------------

@dataclass
class Run:
    """What the fuzzer saw across connections."""
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: list[bytes] = field(default_factory=list)       # bodies answered 200
    cut: list[Payload] = field(default_factory=list)          # bodies whose connection was cut before their end
    shapes: Counter[str] = field(default_factory=Counter)


async def exercise(conn: Connection, host: str, port: int, run: Run) -> None:
    """Send `conn`, read every answer, check each against what the parser made of the bytes."""
    parse = Parse(conn)
    client = await WireClient.connect(host, port)
    assert isinstance(client, WireClient)
    answers: list[Answer] = []
    expected = parse.complete
    unfinished = parse.unfinished

    async def write() -> None:
        """Pipelined, all in one write; else each request once what came before it is answered. A connection that
        ends inside a request (the edge waits for the rest) is shut for writing once what is complete is answered."""
        pieces = [head + body for head, body in conn.pieces()]
        steps = [(b"".join(pieces), expected)] if conn.pipelined else list(zip(pieces, parse.complete_after))
        for data, answered in steps:
            if not await client.send(data):
                return
            while len(answers) < answered and not client.done.done():
                await client.more("answer")
        if unfinished is not None and client.transport is not None and not client.transport.is_closing():
            client.transport.write_eof()

    writer = asyncio.create_task(write())
    try:
        for message in parse.messages[:expected]:
            answer = await client.next_answer(to_head=message.method == b"HEAD")
            if answer is None:
                break
            answers.append(answer)
            client.wake()  # the writer may be waiting for this answer
            if answer.closes:
                break
        ended = bool(answers) and answers[-1].closes or len(answers) < expected
        following = parse.messages[len(answers):len(answers) + 1]  # what an answer after these would answer
        to_head = bool(following) and following[0].method == b"HEAD"
        extra = await client.finish(to_head) if ended or parse.stopped or unfinished is not None else []
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await writer
        client.close()

    where = f"on {conn!r}, answers {answers + extra}"
    for message, answer in zip(parse.messages, answers):
        _check_answer(message, answer, where)
        if answer.status == 200 and answer.body == ACCEPTED_BODY:
            assert message.callback, f"a callback's 200 in the place of {message.method!r} {_short(message.url)} {where}"
            run.accepted.append(bytes(message.body))
    if len(answers) < expected:
        assert answers and answers[-1].closes, \
            f"the edge closed without answering request {len(answers) + 1} of {expected} it completed {where}"
    assert not (answers and answers[-1].closes and extra), f"answers after one that closed the connection {where}"
    assert len(extra) <= 1 and (not extra or parse.stopped or unfinished is not None), f"unasked-for answers {where}"
    for answer in extra:
        assert answer.body != ACCEPTED_BODY, f"a callback answered 200 before its end {where}"
    if unfinished is not None and unfinished.request == len(conn.requests) - 1:
        run.cut.append(conn.requests[-1].payload)
        run.shapes["cut"] += 1
    for answer in answers + extra:
        run.statuses[answer.status] += 1
    run.shapes["pipelined" if conn.pipelined and len(answers) > 1 else "one by one" if len(answers) > 1 else "one"] += 1


def _check_answer(message: Message, answer: Answer, where: str) -> None:
    """The answer to a request the parser completed: its own, and a size refusal exactly when a limit is broken."""
    key = (answer.status, answer.message or "")
    stray = STRAY_REFUSALS.get(key)
    assert stray is None, (f"a complete {message.method.decode('latin-1')} request was answered {stray.status} "
                           f"'{stray.reason}', which answers no request of its own {where}")
    if key in CAPACITY_REFUSALS:
        return
    if key in LIMIT_REFUSALS:
        assert message.over_in_head or message.over_in_trailer, \
            f"a head within every limit ({message.head_bytes} bytes, {message.headers} headers) refused {where}"
    else:
        assert not message.over_in_head, (f"a head past a limit (target {len(message.url)} bytes, {message.headers} "
                                           f"headers, head {message.head_bytes} bytes) reached the app {where}")


# -- the tests ------------------------------------------------------------------------------------------------------

class Crashes(logging.Handler):
    """uvicorn's reports of an exception that escaped the app: on that path it answers 500, unless the socket is
    already shut. The edge means to answer 503 to every fault of its own."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Exception in ASGI application"):
            self.seen.append(self.format(record))


class ServedEdge:
    """The edge (running_edge, the settings' limits) served in an event loop of the test's own, which runs while a
    connection is exercised; uvicorn's crash reports recorded."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.crashes = Crashes()

    def __enter__(self) -> ServedEdge:
        try:
            self.run(self.stack.enter_async_context(running_edge(self.s)))
        except BaseException:
            self.loop.close()
            raise
        logging.getLogger("uvicorn.error").addHandler(self.crashes)  # after uvicorn configured its logging
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("uvicorn.error").removeHandler(self.crashes)
        try:
            self.run(self.stack.aclose())
        finally:
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def exercise(self, conn: Connection, run: Run) -> None:
        try:
            self.run(asyncio.wait_for(exercise(conn, self.s.edge_host, self.s.edge_port, run), 4 * ANSWER_SECONDS))
        finally:  # reported even when the connection's own checks failed too: it is the worse fault
            crashes, self.crashes.seen = self.crashes.seen, []
            assert not crashes, f"an exception escaped the app on {conn!r}:\n{crashes[0][-3000:]}"

    def check_topic(self, run: Run) -> None:
        """Every body answered 200 is in the raw topic byte for byte; no body cut short is, unless answered 200."""
        stored = Counter(r.value for r in self.run(read_topic(self.s.kafka_bootstrap, RAW.name(self.s))))
        missing = [body for body in run.accepted if not stored[body]]
        assert not missing, (f"{len(missing)} of {len(run.accepted)} bodies answered 200 are not in the raw topic: "
                             + ", ".join(_short(body, 80) for body in missing[:5]))
        accepted = set(run.accepted)
        cut = {p.data for p in run.cut if p.data}
        markers = [b'"newMsgId":%d' % p.unique_id for p in run.cut if p.unique_id is not None]
        for value in stored:
            if value not in accepted:
                assert value not in cut and not any(m in value for m in markers), \
                    f"a body cut short was archived: {_short(value)}"


FUZZ = hypothesis_settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                           suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def test_whole_requests_on_the_wire(settings: Settings) -> None:
    s = edge_settings(settings)
    limits = (s.edge_max_body_bytes, s.edge_max_url_bytes, s.edge_max_header_bytes, s.edge_max_headers,
              s.edge_max_head_bytes)
    assert limits == (MAX_BODY, MAX_URL, MAX_HEADER, MAX_HEADERS, MAX_HEAD), "the edge must keep the default limits"
    run = Run()
    with ServedEdge(s) as edge:

        # no shrinking (see above): a failure prints its connection, and this derandomized run reproduces it
        @FUZZ
        @given(connections())
        def check(conn: Connection) -> None:
            edge.exercise(conn, run)

        check()
        edge.check_topic(run)
    # the fuzzer reached both sides of every check: accepted and refused bodies, head limits, cut and pipelined
    reached = {status: run.statuses[status] for status in (200, 400, 401, 403, 413, 414, 431)}
    assert reached[200] >= 100 and reached[400] >= 50 and reached[413] >= 2, (reached, run.statuses, run.shapes)
    assert reached[401] + reached[403] >= 10 and reached[414] >= 10 and reached[431] >= 10, (reached, run.statuses)
    assert run.shapes["cut"] >= 20 and run.shapes["pipelined"] >= 10, run.shapes


# -- what the fuzzer found, each reduced to one connection ---------------------------------------------------------

def _post(payload: Payload, *extra: bytes, size: str | None = None) -> Wire:
    """A well-formed callback POST, with `extra` header lines and its head brought to `size` (see _sized)."""
    line = b"POST /callback/s3cret HTTP/1.1\r\n"
    lines = [b"Content-Type: application/json", b"Content-Length: %d" % len(payload.data), *extra]
    return _wire(line, _sized(size, line, lines, b"\r\n"), b"\r\n", payload.data, payload)


BROKEN_CHUNK = Wire(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\n", Payload(b""))
FOUND = {
    # the edge answers the second request's framing error at once, before the first request's answer, and shuts
    # the socket: the client reads "400 invalid HTTP request" as the first request's answer, while the first body
    # is archived; its own answer fails to write (uvicorn: "ASGI callable returned without completing response")
    "a request pipelined before a broken chunk": (
        _post(_valid_callback("60001", False, False, None)), BROKEN_CHUNK),
    # the same, the first request with Expect: 100-continue: its receive() writes "100 Continue" to the shut socket,
    # the app's 503 fallback raises as well, the exception escapes to uvicorn, which tries to answer 500
    "a request with Expect: 100-continue pipelined before a broken chunk": (
        _post(_valid_callback("60001", False, False, None), b"Expect: 100-continue"), BROKEN_CHUNK),
    # the whole-head limit counts a head from the read it begins in: a head that begins in the same read as the
    # previous request's end is not counted, so a head past MAX_HEAD reaches the app (and is archived)
    "a head one byte past the limit pipelined behind a request": (
        _post(_valid_callback("60001", False, False, None)),
        _post(_valid_callback("60001", False, False, None), size="head-over")),
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_what_the_fuzzer_found(settings: Settings, name: str) -> None:
    run = Run()
    with ServedEdge(edge_settings(settings)) as edge:
        edge.exercise(Connection(FOUND[name], pipelined=True), run)
        edge.check_topic(run)
