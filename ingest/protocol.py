"""The edge's HTTP/1.1 protocol: uvicorn's httptools protocol with a bound on everything a stranger controls.

httptools (llhttp) bounds nothing: it appends to a header value, and uvicorn to the URL, for as long as the
head goes on, at a cost that grows with the square of its length, and uvicorn times a connection out only
after a response. (uvicorn's h11 protocol bounds the head, but is the slower parser.) So this subclass:

- counts the bytes of each request head as they arrive and feeds the parser no more than the limit: a longer
  request target is 414, a longer header, a longer head or too many headers 431;
- times every phase of a connection with one sweep a few times a second (no timer per request): a head not
  complete within the head timeout of the connection or of the previous answer is 408, a body not complete
  within the body timeout after its head is 408, and a connection that sends nothing is closed after the
  keep-alive timeout (uvicorn's own idle timer, armed here from the connection's start as well);
- caps open connections below the open-file limit: one more closes the oldest connection that is idle or still
  sending its head (so held-open connections cannot lock out E云), or, when every connection carries a request,
  is answered 503 and closed; caps the requests being handled at once (503 beyond, without reaching the app);
- closes a connection after the answer when the answer went out before the request's body was read (a
  stranger's 401 does not drain a 300 MB body), and stops reading a body at the app's read cap;
- answers its own refusals in the app's shape, `{"code":"1001","message":REASON,"data":null}` with
  `connection: close`, then half-closes and keeps the socket for a moment (dropping at most 64 KiB of what still
  arrives, then no longer reading), so that closing does not reset the connection under the answer; counts them
  (`wxarchive_edge_refused_total{reason}`) rather than logging them: a stranger decides how many there are.

A body cut short (a disconnect, the body timeout) reaches the app as `http.disconnect` from receive(), the
way uvicorn signals a disconnect; the app must never archive what it read before it.
"""

from __future__ import annotations

import asyncio
import http
import logging
import math
import resource
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ingest.app import READ_CAP_FACTOR
from wxarchive.config import Settings, env_name
from wxarchive.errors import ConfigError

__all__ = ["BAD_REQUEST", "BODY_TIMEOUT", "BUSY", "ConnectionGuard", "EVICTED", "EdgeLimits", "FD_RESERVE", "FULL",
           "HEADER_TOO_LARGE", "HEAD_TIMEOUT", "HEAD_TOO_LARGE", "Refusal", "TOO_MANY_HEADERS", "UPGRADE",
           "URL_TOO_LONG", "response"]

log = logging.getLogger("wxarchive.edge")

FD_RESERVE = 64        # open files the edge needs besides its connections: Kafka, spool, logs, listeners
LINGER_SECONDS = 2.0   # after a refusal, how long the connection stays half-open for the client to read the answer
LINGER_BYTES = 65536   # what is read and dropped meanwhile; then reading pauses, so a flood costs no CPU
REQUEST_LINE_FRAMING = len(b"  HTTP/1.1\r\n\r\n")  # a head's bytes besides its method, target and headers
HEADER_FRAMING = len(b": \r\n")  # a header line's bytes besides its name and value
SWEEP_SECONDS = 0.25   # how often the phase deadlines are checked: timeouts fire up to this much late

HEAD, BODY, IN_APP, LINGER = range(4)  # a connection's phase: its deadline depends on it


def refusal_body(reason: str) -> bytes:
    """The body of every answer but 200, the app's shape: {"code":"1001","message":REASON,"data":null}."""
    return orjson.dumps({"code": "1001", "message": reason, "data": None})


def response(status: int, reason: str) -> bytes:
    """A whole HTTP/1.1 answer in the edge's JSON shape that closes the connection."""
    body = refusal_body(reason)
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, http.HTTPStatus(status).phrase.encode(), len(body)) + body)


@dataclass(frozen=True)
class Refusal:
    """What the server answers, and counts under `metric`, when a request breaks a limit."""
    status: int
    reason: str
    metric: str

    @property
    def answer(self) -> bytes:
        return response(self.status, self.reason)


URL_TOO_LONG = Refusal(414, "request target too long", "url_too_long")
HEADER_TOO_LARGE = Refusal(431, "request header too large", "header_too_large")
HEAD_TOO_LARGE = Refusal(431, "request head too large", "head_too_large")
TOO_MANY_HEADERS = Refusal(431, "too many request headers", "too_many_headers")
HEAD_TIMEOUT = Refusal(408, "request head not received in time", "head_timeout")
BODY_TIMEOUT = Refusal(408, "request body not received in time", "body_timeout")
BAD_REQUEST = Refusal(400, "invalid HTTP request", "bad_request")
UPGRADE = Refusal(400, "protocol upgrades are not supported", "upgrade")
BUSY = Refusal(503, "too many requests at once; retry", "busy")
FULL = Refusal(503, "too many connections; retry", "connections_full")
EVICTED = Refusal(503, "too many connections; retry", "evicted")
REFUSALS = (URL_TOO_LONG, HEADER_TOO_LARGE, HEAD_TOO_LARGE, TOO_MANY_HEADERS, HEAD_TIMEOUT, BODY_TIMEOUT,
            BAD_REQUEST, UPGRADE, BUSY, FULL, EVICTED)
BODY_CAP = "body_read_cap"  # not a refusal: reading stops, the app answers


PARSER_STOPS = (httptools.HttpParserError, httptools.HttpParserUpgrade)  # the second is not a subclass


class Refused(Exception):
    """Raised in a parser callback to stop the parser; data_received answers with the refusal."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class BodyCapReached(Exception):
    """Raised in on_body to stop the parser: the app has more of the body than it will read."""


@dataclass(frozen=True)
class EdgeLimits:
    max_url_bytes: int
    max_header_bytes: int
    max_head_bytes: int
    max_headers: int
    head_timeout: float
    body_timeout: float
    keepalive_timeout: float
    keepalive_requests: int
    max_connections: int
    max_requests: int
    body_read_cap: int  # the app reads a body up to READ_CAP_FACTOR times the limit; the server no further

    @classmethod
    def from_settings(cls, s: Settings, open_files: int | None = None) -> EdgeLimits:
        """The limits, checked; the connection cap lowered to fit `open_files` (default: this process's soft
        RLIMIT_NOFILE) less a reserve, because a server out of file descriptors answers nobody."""
        for name, least in (("edge_max_url_bytes", 64), ("edge_max_header_bytes", 64), ("edge_max_headers", 8),
                            ("edge_keepalive_requests", 1), ("edge_max_connections", 1), ("edge_max_requests", 1)):
            if getattr(s, name) < least:
                raise ConfigError(f"{env_name(name)} must be at least {least}")
        if s.edge_max_head_bytes < max(s.edge_max_url_bytes, s.edge_max_header_bytes):
            raise ConfigError(f"{env_name('edge_max_head_bytes')} must be at least {env_name('edge_max_url_bytes')} "
                              f"and {env_name('edge_max_header_bytes')}")
        for name in ("edge_head_timeout", "edge_body_timeout", "edge_keepalive_timeout"):
            if not 0 < getattr(s, name) < math.inf:
                raise ConfigError(f"{env_name(name)} must be a positive number of seconds")
        if open_files is None:
            open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        connections = s.edge_max_connections
        fit = max(1, open_files - FD_RESERVE) if open_files != resource.RLIM_INFINITY else connections
        if connections > fit:
            log.warning("the connection cap is lowered to fit the open-file limit",
                        extra={"configured": connections, "cap": fit, "open_files": open_files})
            connections = fit
        return cls(s.edge_max_url_bytes, s.edge_max_header_bytes, s.edge_max_head_bytes, s.edge_max_headers,
                   s.edge_head_timeout, s.edge_body_timeout, s.edge_keepalive_timeout, s.edge_keepalive_requests,
                   connections, s.edge_max_requests, READ_CAP_FACTOR * s.edge_max_body_bytes)


def raise_open_file_limit() -> int:
    """Lift this process's soft open-file limit to its hard limit (as Go's runtime does), so that the default
    connection cap fits where the soft limit is a low 1024; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class ConnectionGuard:
    """State shared by one server's connections: which are open, which may be closed to make room (idle or
    still sending a head, oldest first), the sweep that enforces the phase deadlines, and refusal counts."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.open: dict[EdgeProtocol, None] = {}
        self.refused: Counter[str] = Counter()
        self._sweep: asyncio.TimerHandle | None = None

    def protocol_class(self) -> type[EdgeProtocol]:
        """The protocol class to pass to uvicorn (`http=`): uvicorn builds protocols from a class alone."""
        return type("GuardedEdgeProtocol", (EdgeProtocol,), {"guard": self})

    def admit(self, conn: EdgeProtocol) -> bool:
        """Make room for `conn` (closing the connection that has waited longest for a head, or lingers, if the cap
        is reached); False if there is none to make, every open connection carrying a request. The search runs
        only at the cap, so the request path keeps no list of waiting connections."""
        if len(self.open) >= self.limits.max_connections:
            victim = min((c for c in self.open if c.phase == HEAD or c.phase == LINGER), key=_since, default=None)
            if victim is None:
                self.refused[FULL.metric] += 1
                return False
            self.forget(victim)
            victim.evict()
        self.open[conn] = None
        if self._sweep is None:
            self._sweep = conn.loop.call_later(SWEEP_SECONDS, self.sweep, conn.loop)
        return True

    def forget(self, conn: EdgeProtocol) -> None:
        self.open.pop(conn, None)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire every connection past its phase's deadline; runs while any connection is open."""
        now = loop.time()
        for conn in [c for c in self.open if c.deadline <= now]:
            conn.expire()
        self._sweep = loop.call_later(SWEEP_SECONDS, self.sweep, loop) if self.open else None

    def collector(self, edge_id: str) -> Collector:
        return _GuardCollector(self, edge_id)


def _since(conn: EdgeProtocol) -> float:
    return conn.since


class _GuardCollector(Collector):
    """Read at scrape time, so the request path pays nothing for these metrics."""

    def __init__(self, guard: ConnectionGuard, edge_id: str) -> None:
        self.guard, self.edge_id = guard, edge_id

    def collect(self) -> Iterable[Metric]:
        refused = CounterMetricFamily("wxarchive_edge_refused", "Requests and connections the server refused or "
                                      "closed before the app saw them, by reason.", labels=["edge", "reason"])
        for reason in [r.metric for r in REFUSALS] + [BODY_CAP]:
            refused.add_metric([self.edge_id, reason], self.guard.refused[reason])
        yield refused
        connections = GaugeMetricFamily("wxarchive_edge_connections", "Open connections to the callback port.",
                                        labels=["edge"])
        connections.add_metric([self.edge_id], len(self.guard.open))
        yield connections


class AnswerTransport:
    """The transport as uvicorn's code sees it (`protocol.transport`, and so every request cycle's): writes go
    straight to the socket, but a close after an answer sent before the body was read is a linger
    (EdgeProtocol.close_after_answer), so that the client, still sending, gets to read the answer rather than a
    reset. Set once per connection, so the request path pays nothing for it."""

    __slots__ = ("_protocol", "write", "is_closing")

    def __init__(self, protocol: EdgeProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self.write, self.is_closing = transport.write, transport.is_closing  # the transport's own: no extra call

    def close(self) -> None:
        self._protocol.close_after_answer()


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge's limits; built per server by ConnectionGuard.protocol_class."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = self.guard.limits
        self.phase = HEAD
        self.deadline = math.inf
        self.since = 0.0            # when the connection began to wait for its current head
        self._in_head = True        # the parser is between messages or inside a head
        self._head_bytes = 0        # bytes fed to the parser since the current head began
        self._heads = 0             # heads completed on this connection
        self._body_bytes = 0
        self._keep_alive = False    # what the current request's answer may keep, once its body is read
        self._discarding = False    # no more parsing: input is dropped, up to a budget, then reading pauses
        self.socket: asyncio.Transport = None  # type: ignore[assignment]  # the real one; self.transport is uvicorn's view
        self._drop_budget = LINGER_BYTES
        self._head_size = 0         # the current head as the parser reports it (request line and headers)
        self._cycles: list[Any] = []  # this connection's request cycles, oldest first, until answered
        self._deferred: Refusal | None = None  # a refusal owed after the answers to earlier requests

    # the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            self._discarding = True
            transport.write(FULL.answer)
            transport.close()
            return
        self.socket = transport
        self.transport = AnswerTransport(self, transport)  # type: ignore[assignment]
        self._await_head()
        # uvicorn arms its idle timer only after an answer; a connection that never sends a byte is idle too
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            self._drop_budget -= len(data)
            if self._drop_budget < 0:
                self.flow.pause_reading()
            return
        if self._in_head:
            room = self.limits.max_head_bytes - self._head_bytes
            if len(data) > room:
                self._feed_past_room(data, room)
                return
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except PARSER_STOPS as exc:
            self._parser_stopped(exc)

    def _feed_past_room(self, data: bytes, room: int) -> None:
        """Feed only what the head may still take: if the head does not end within it, 431; else go on with the
        rest (the body, or the next head, counted afresh)."""
        heads = self._heads
        self._head_bytes += room
        self._feed(data[:room])
        if self._discarding:
            return
        if self._heads == heads:
            self._refuse(HEAD_TOO_LARGE)
        else:
            self.data_received(data[room:])

    def _feed(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except PARSER_STOPS as exc:
            self._parser_stopped(exc)

    def _parser_stopped(self, exc: Exception) -> None:
        """The parser stopped: a limit (Refused), the body read cap, an upgrade, or input that is not HTTP."""
        cause = exc.__context__
        if isinstance(exc, httptools.HttpParserUpgrade):
            self._refuse(UPGRADE)
        elif isinstance(cause, BodyCapReached):
            self._discarding = True
            self._keep_alive = False
        elif isinstance(cause, Refused):
            self._refuse(cause.refusal)
        else:
            if cause is not None:  # a fault in a callback, not the client's: worth a look, not a flood
                log.debug("a request failed in the parser", exc_info=cause)
            self._refuse(BAD_REQUEST)

    # the parser's callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = REQUEST_LINE_FRAMING

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self.limits.max_url_bytes:
            raise Refused(URL_TOO_LONG)
        if not self.url:
            self._count_head(len(self.parser.get_method()))
        self._count_head(len(url))
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > self.limits.max_header_bytes:
            raise Refused(HEADER_TOO_LARGE)
        if len(self.headers) >= self.limits.max_headers:
            raise Refused(TOO_MANY_HEADERS)
        self._count_head(len(name) + len(value) + HEADER_FRAMING)
        name = name.lower()  # as uvicorn's on_header, inlined: it runs for every header of every request
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def _count_head(self, size: int) -> None:
        """The whole-head limit, counted from what the parser reports: the bytes-read count (data_received) cannot
        see a head that begins in the same read as the previous request's end."""
        self._head_size += size
        if self._head_size > self.limits.max_head_bytes:
            raise Refused(HEAD_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        if self.parser.should_upgrade():
            raise Refused(UPGRADE)
        if len(self.tasks) >= self.limits.max_requests:
            raise Refused(BUSY)
        super().on_headers_complete()
        cycle = self.cycle
        self._cycles = [c for c in self._cycles if not _settled(c)]
        self._cycles.append(cycle)
        self._keep_alive = cycle.keep_alive and self._heads < self.limits.keepalive_requests
        cycle.keep_alive = False  # until the body is read: an answer sent before that closes the connection
        self._body_bytes = 0
        self.phase, self.deadline = BODY, self.loop.time() + self.limits.body_timeout

    # on_body and on_message_complete are uvicorn's, inlined (they run for every request), less its upgrade
    # checks: upgrades are refused at the head

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        cycle = self.cycle
        if not cycle.response_complete:
            cycle.body += body
            if len(cycle.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.message_event.set()
        if self._body_bytes > self.limits.body_read_cap:
            self.guard.refused[BODY_CAP] += 1
            raise BodyCapReached()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        self.phase, self.deadline = IN_APP, math.inf
        cycle = self.cycle
        if not cycle.response_complete:
            cycle.more_body = False
            if not cycle.response_started:
                cycle.keep_alive = self._keep_alive
            cycle.message_event.set()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deferred is not None and not self._answers_owed():
            refusal, self._deferred = self._deferred, None
            self._answer_and_linger(refusal)
        elif self._in_head and self.cycle.response_complete and not self.socket.is_closing():
            self._await_head()  # nothing in flight: the next head is timed from the end of this answer

    def shutdown(self) -> None:
        self._keep_alive = False
        super().shutdown()

    def close_after_answer(self) -> None:
        """uvicorn closes the connection after an answer: linger instead if the body was not read to its end."""
        if self.socket.is_closing():
            return
        if self.phase == BODY:
            self._discarding = True
            self._linger()
        else:
            self.socket.close()

    # deadlines, refusals, eviction

    def _await_head(self) -> None:
        self.since = self.loop.time()
        self.phase, self.deadline = HEAD, self.since + self.limits.head_timeout

    def expire(self) -> None:
        """The phase's deadline passed (called by the guard's sweep)."""
        if self.socket.is_closing():
            return
        if (self.phase == HEAD and not self._head_bytes) or self.phase == LINGER:
            self.socket.close()
        elif self.phase == HEAD:
            self._refuse(HEAD_TIMEOUT)
        elif self.phase == BODY:
            self._refuse(BODY_TIMEOUT)

    def evict(self) -> None:
        """Closed to make room for a new connection: a partial head is told why, an idle connection just closed."""
        self.guard.refused[EVICTED.metric] += 1
        self._discarding = True
        if not self.socket.is_closing():
            if self.phase == HEAD and self._head_bytes:
                self.socket.write(EVICTED.answer)
            self.socket.close()

    def _refuse(self, refusal: Refusal) -> None:
        self.guard.refused[refusal.metric] += 1
        self._discarding = True
        self._keep_alive = False
        if self.socket.is_closing():
            return
        cycle = self.cycle
        if not self._in_head and cycle is not None and not cycle.response_complete:
            # the refusal is about the current request, whose head the app may have
            if self.pipeline and self.pipeline[0][0] is cycle:
                self.pipeline.popleft()  # queued behind an earlier request: it never reaches the app
                cycle.disconnected = True
            elif cycle.response_started or not cycle.more_body:
                cycle.keep_alive = False  # the app has its whole request: let it answer, then close
                return
            else:
                # the app waits for a body that will not come: it is told the client went away, as on a disconnect
                cycle.disconnected = True
                cycle.message_event.set()
        if self._answers_owed():
            self._deferred = refusal  # answers go out in the order of the requests: this one after the others
            return
        self._answer_and_linger(refusal)

    def _answers_owed(self) -> bool:
        """An earlier request of this connection still waits for its answer."""
        self._cycles = [c for c in self._cycles if not _settled(c)]
        return bool(self._cycles)

    def _answer_and_linger(self, refusal: Refusal) -> None:
        if not self.socket.is_closing():
            self.socket.write(refusal.answer)
            self._linger()

    def _linger(self) -> None:
        """Half-close after a refusal and keep the socket a moment (dropping a little of what still arrives):
        closing a socket with unread input resets the connection, and the client may then never read the answer."""
        self._unset_keepalive_if_required()
        self.since = -math.inf  # the first to go when room is needed
        self.phase, self.deadline = LINGER, self.loop.time() + LINGER_SECONDS
        if self.socket.can_write_eof():
            # nothing may be written after this: a late write (an app's answer, "100 Continue") is dropped, not
            # raised into the app
            self.transport.write = _dropped  # type: ignore[method-assign]
            self.socket.write_eof()


def _settled(cycle: Any) -> bool:
    """A request cycle owes no answer: answered, or its client is gone."""
    return bool(cycle.response_complete or cycle.disconnected)


def _dropped(data: bytes | bytearray | memoryview) -> None:
    """A write after the connection's write side was shut."""
