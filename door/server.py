"""The door: ClickHouse's HTTP interface, read-only, served on loopback by the process that owns the chdb directory.

In embedded mode only the sink may open the archive (chdb allows one process per data path), so everything
else reads through this: `wxarchive sql`, the API, later the alerter and the console, and any ClickHouse client
(clickhouse-connect's http:// client, curl, Grafana). Enough of the interface is served that they work
unchanged: `/ping`, queries by GET `?query=` and POST body, `database`, `default_format` and FORMAT clauses,
`query_id`, settings and `param_NAME` parameters, the three ways to sign in, ClickHouse's error text with the
`X-ClickHouse-Exception-Code` header and the server's HTTP status, gzip when asked, and results streamed in
blocks. Every query is checked (door/statements.py) and runs in a session locked to readonly=1 with limits
(door/engine.py); the sink's inserts go first (wxarchive/engine_share.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from door.engine import DoorEngine, Query
from door.failures import Failure, from_engine
from door.password import door_password
from door.request import (
    Credentials,
    credentials,
    effective_format,
    query_parameters,
    query_settings,
)
from door.statements import named_format, refusal
from wxarchive.config import Settings
from wxarchive.engine_share import EngineShare
from wxarchive.http_server import serve_app

__all__ = ["Door", "DoorCollector", "DoorStats"]

log = logging.getLogger("wxarchive.door")

MAX_QUERY_BYTES = 1024 * 1024  # a POSTed query longer than this gets 413 (ClickHouse's QUERY_IS_TOO_LARGE)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
_END = object()

CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values", "TSV": "text/tab-separated-values",
    "TabSeparatedWithNames": "text/tab-separated-values", "TSVWithNames": "text/tab-separated-values",
    "TabSeparatedWithNamesAndTypes": "text/tab-separated-values", "TSVWithNamesAndTypes": "text/tab-separated-values",
    "TabSeparatedRaw": "text/tab-separated-values", "TSVRaw": "text/tab-separated-values",
    "CSV": "text/csv", "CSVWithNames": "text/csv", "CSVWithNamesAndTypes": "text/csv",
    "JSON": "application/json", "JSONCompact": "application/json", "JSONEachRow": "application/x-ndjson",
    "JSONCompactEachRow": "application/x-ndjson", "JSONStrings": "application/json", "XML": "application/xml",
}


@dataclass
class DoorStats:
    """What the door did, read at scrape time."""

    answers: Counter[int] = field(default_factory=Counter)  # by HTTP status
    refused: int = 0  # statements the door refused before the engine saw them
    queue_seconds: list[float] = field(default_factory=lambda: [0.0] * (len(QUEUE_BUCKETS) + 1))
    queue_sum: float = 0.0
    running: int = 0
    result_bytes: int = 0

    def queued(self, seconds: float) -> None:
        self.queue_sum += seconds
        for i, bound in enumerate(QUEUE_BUCKETS):
            if seconds <= bound:
                self.queue_seconds[i] += 1
                return
        self.queue_seconds[-1] += 1


class DoorCollector(Collector):
    def __init__(self, door: Door) -> None:
        self.door = door

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        s = self.door.stats
        answers = CounterMetricFamily("wxarchive_door_requests", "Door requests answered, by HTTP status.",
                                      labels=["status"])
        for status, n in sorted(s.answers.items()):
            answers.add_metric([str(status)], n)
        yield answers
        yield CounterMetricFamily("wxarchive_door_refused", "Statements refused before the engine saw them.",
                                  value=s.refused)
        yield GaugeMetricFamily("wxarchive_door_running", "Queries running through the door.", value=s.running)
        yield CounterMetricFamily("wxarchive_door_result_bytes", "Result bytes sent.", value=s.result_bytes)
        buckets: list[tuple[str, float]] = []
        total = 0.0
        for bound, count in zip([*map(str, QUEUE_BUCKETS), "+Inf"], s.queue_seconds):
            total += count
            buckets.append((bound, total))
        yield HistogramMetricFamily("wxarchive_door_queue_seconds", "Time a query waited for a free slot.",
                                    buckets=buckets, sum_value=s.queue_sum)
        yield CounterMetricFamily("wxarchive_door_yield_seconds", "Time readers yielded to the sink's inserts.",
                                  value=self.door.share.reader_wait_seconds)


class Door:
    """The door of one embedded archive, inside the sink's process. `url` is what a reader pastes."""

    def __init__(self, settings: Settings, share: EngineShare) -> None:
        self.settings = settings
        self.share = share
        self.user = settings.door_user
        self.password = door_password(settings)
        self.engine = DoorEngine(settings.clickhouse_dsn, share, settings.door_max_queries,
                                 settings.door_max_execution_time, settings.door_max_memory_bytes)
        self.stats = DoorStats()
        self._executor = ThreadPoolExecutor(max_workers=settings.door_max_queries, thread_name_prefix="door")
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.version = ""
        self.timezone = "UTC"

    @property
    def url(self) -> str:
        """The door with its credentials: `http://USER:PASSWORD@HOST:PORT`."""
        scheme, _, rest = self.base_url.partition("://")
        return f"{scheme}://{self.user}:{self.password}@{rest}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.engine.open)
        self.version, self.timezone = await loop.run_in_executor(self._executor, self._server_facts)
        app = web.Application(client_max_size=MAX_QUERY_BYTES)
        app.router.add_route("*", "/", self._root)
        app.router.add_route("*", "/ping", self._ping)
        self._runner, self.base_url = await serve_app(app, self.settings.door_host, self.settings.door_port)
        log.debug("door open", extra={"url": self.base_url, "user": self.user, "slots": self.engine.slots})

    def _server_facts(self) -> tuple[str, str]:
        rows = b"".join(self.engine.stream(Query("SELECT version(), timezone()", "TabSeparated", "default", {}, {})))
        version, _, zone = rows.decode().strip().partition("\t")
        return version, zone or "UTC"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(self._executor, self.engine.close)
        self._executor.shutdown(wait=False)

    # -- HTTP --------------------------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    def _failure(self, failure: Failure, query_id: str = "") -> web.Response:
        self.stats.answers[failure.status] += 1
        headers = {"X-ClickHouse-Exception-Code": str(failure.code), "X-ClickHouse-Server-Display-Name": "wxarchive"}
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        if failure.code == 516:
            headers["WWW-Authenticate"] = 'Basic realm="wxarchive door"'
        return web.Response(status=failure.status, body=failure.body(self.version), headers=headers,
                            content_type="text/plain", charset="utf-8")

    def _signed_in(self, who: Credentials) -> bool:
        user_ok = hmac.compare_digest(who.user.encode(), self.user.encode())
        return hmac.compare_digest(who.password.encode(), self.password.encode()) and user_ok

    async def _root(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        query_id = params.get("query_id") or request.headers.get("X-ClickHouse-Query-Id") or str(uuid.uuid4())
        if request.method not in ("GET", "POST", "HEAD"):
            return self._failure(Failure(1, "UNSUPPORTED_METHOD", f"HTTP method {request.method} is not served"))
        body = b""
        if request.method == "POST":
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._failure(Failure(229, "QUERY_IS_TOO_LARGE",
                                             f"the query is longer than {MAX_QUERY_BYTES} bytes"), query_id)
        sql = "\n".join(part for part in (params.get("query", ""), body.decode(errors="replace")) if part)
        if not sql.strip():
            if request.method == "POST":
                return self._failure(Failure(62, "SYNTAX_ERROR", "Empty query"), query_id)
            return web.Response(text="Ok.\n")
        who = credentials(request.headers, params)
        if isinstance(who, Failure):
            return self._failure(who, query_id)
        if not self._signed_in(who):
            return self._failure(Failure(516, "AUTHENTICATION_FAILED", f"{who.user[:64]}: Authentication failed: "
                                         "password is incorrect, or there is no user with such name"), query_id)
        refused = refusal(sql)
        if refused is not None:
            self.stats.refused += 1
            return self._failure(Failure(refused.code, refused.name, f"{who.user}: {refused.message}"), query_id)
        named = named_format(sql)
        fmt = effective_format(named, params)
        query = Query(sql.strip().rstrip(";"), None if named else fmt, params.get("database", "default"),
                      query_settings(params), query_parameters(params))
        return await self._answer(request, query, fmt, query_id)

    async def _answer(self, request: web.Request, query: Query, fmt: str, query_id: str) -> web.StreamResponse:
        blocks = self._blocks(query)
        try:
            first = await blocks.__anext__()
        except StopAsyncIteration:
            first = b""
        except Exception as exc:  # the engine refused or failed before any result: the server's answer
            return self._failure(from_engine(exc), query_id)
        encoder = _encoder(request)
        response = web.StreamResponse(headers={
            "Content-Type": f"{CONTENT_TYPES.get(fmt, 'application/octet-stream')}; charset=UTF-8",
            "X-ClickHouse-Format": fmt, "X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.timezone,
            "X-ClickHouse-Server-Display-Name": "wxarchive",
            "X-ClickHouse-Summary": '{"read_rows":"0","read_bytes":"0","written_rows":"0","written_bytes":"0",'
                                    '"total_rows_to_read":"0","result_rows":"0","result_bytes":"0"}',
        })
        if encoder is not None:
            response.headers["Content-Encoding"] = encoder[0]
        self.stats.answers[200] += 1
        await response.prepare(request)
        compress = encoder[1] if encoder else None
        try:
            chunk: bytes | None = first
            while chunk is not None:
                if chunk:
                    self.stats.result_bytes += len(chunk)
                    await response.write(compress.compress(chunk) if compress else chunk)
                try:
                    chunk = await blocks.__anext__()
                except StopAsyncIteration:
                    chunk = None
        except ConnectionResetError:  # the reader left (a client that read enough): not the door's error
            await blocks.aclose()
            return response
        except asyncio.CancelledError:
            await blocks.aclose()
            raise
        except Exception as exc:  # mid-result: the status is sent; the server writes the exception into the body
            failure = from_engine(exc)
            text = b"\n" + failure.body(self.version)
            await response.write(compress.compress(text) if compress else text)
        if compress:
            await response.write(compress.flush())
        await response.write_eof()
        return response

    async def _blocks(self, query: Query) -> AsyncGenerator[bytes, None]:
        """The engine's blocks, produced on a slot's thread and handed over through a short queue (at most a few
        blocks wait in memory); stopping early (a reader gone) stops the engine's side at the next block."""
        loop = asyncio.get_running_loop()
        handoff: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
        stop = threading.Event()
        queued_at = time.monotonic()

        def put(item: Any) -> bool:
            future = asyncio.run_coroutine_threadsafe(handoff.put(item), loop)
            while not stop.is_set():
                try:
                    future.result(timeout=0.5)
                    return True
                except TimeoutError:
                    continue
            future.cancel()
            return False

        def produce() -> None:
            self.stats.queued(time.monotonic() - queued_at)
            self.stats.running += 1
            try:
                with contextlib.closing(self.engine.stream(query)) as blocks:  # a reader gone: the slot back at once
                    for block in blocks:
                        if not put(block):
                            return
                put(_END)
            except Exception as exc:  # handed to the reader, who answers it the server's way
                put(exc)
            finally:
                self.stats.running -= 1

        loop.run_in_executor(self._executor, produce)  # produce() answers every outcome through the queue
        try:
            while True:
                item = await handoff.get()
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()  # the producer sees it before its next block and gives the slot back


def _encoder(request: web.Request) -> tuple[str, Any] | None:
    """gzip or deflate when the reader asks for HTTP compression (enable_http_compression=1) and accepts it."""
    if request.query.get("enable_http_compression") not in ("1", "true"):
        return None
    accepted = request.headers.get("Accept-Encoding", "").lower()
    if "gzip" in accepted:
        return "gzip", zlib.compressobj(wbits=31)
    if "deflate" in accepted:
        return "deflate", zlib.compressobj()
    return None
