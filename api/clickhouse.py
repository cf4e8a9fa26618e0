"""The API's way into the archive: parameterized queries over ClickHouse's HTTP interface (the door in embedded mode,
a server otherwise), run on a small pool of threads, one client per thread.

clickhouse-connect's client is blocking, so every call runs on this pool and never on the event loop. Clients are
opened without a session (a session would serialize concurrent queries on the server's side) and kept per thread,
so no client is shared between two queries at once. The DSN is asked for when a client is opened, not at start:
in embedded mode the door's password file appears only once the sink ran, and an API started first still gets in.
Values always travel as server-side parameters (`{name:Type}`), never pasted into the SQL.

Failures come back as the door's own: `DoorRefused` with ClickHouse's code and the HTTP status a server gives it
(an unknown table, a syntax error), or `ClickHouseError` (503) when nothing answers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from door.failures import Failure, from_engine
from door.reader import DoorRefused
from wxarchive.clickhouse import open_client
from wxarchive.config import mask_dsn
from wxarchive.errors import ClickHouseError, WxarchiveError

__all__ = ["ArchiveReader", "Row", "engine_failure"]

Row = dict[str, Any]
T = TypeVar("T")

# clickhouse-connect ends a server's error text with where it sent the query; ClickHouse's own text ends before it


def engine_failure(exc: BaseException) -> Failure:
    """ClickHouse's code, name and message of a failed call, as the door states them."""
    return from_engine(exc)


class ArchiveReader:
    """`rows(sql, parameters)` from a pool of `threads` clients of `dsn()`; `call(fn)` runs fn(client) on it."""

    def __init__(self, dsn: Callable[[], str], *, threads: int = 4, timeout_s: float = 30.0,
                 name: str = "archive") -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"api-{name}")
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()

    async def call(self, fn: Callable[[Client], T]) -> T:
        """fn(client) on a pool thread with that thread's client; a failed call drops the client, so the next one
        connects again (the door restarted, its password changed)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._on_thread, fn)

    async def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[Row]:
        """The result as one dict per row, by column name."""
        def query(client: Client) -> list[Row]:
            result = client.query(sql, parameters=dict(parameters or {}))
            names = result.column_names
            return [dict(zip(names, row)) for row in result.result_rows]

        return await self.call(query)

    async def ping(self) -> str:
        """"" when ClickHouse answers a query, else why not (for /readyz)."""
        try:
            await self.rows("SELECT 1")
        except (ClickHouseError, OSError) as exc:
            return f"ClickHouse does not answer: {exc}"
        return ""

    def _on_thread(self, fn: Callable[[Client], T]) -> T:
        client = self._client()
        try:
            return fn(client)
        except WxarchiveError:  # already said in the archive's terms (a cap the caller passed, ClickHouse away)
            raise
        except Exception as exc:  # clickhouse-connect's errors carry the server's text: code, name and message
            failure = engine_failure(exc)
            if failure.code == 1002:  # no ClickHouse code: the transport failed, not the query
                self._drop(client)
                raise ClickHouseError(f"ClickHouse did not answer: {failure.message}") from None
            raise DoorRefused(failure) from None

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            dsn = self._dsn()
            try:
                client = open_client(dsn, autogenerate_session_id=False, send_receive_timeout=self._timeout_s,
                                     connect_timeout=5)
            except ClickHouseError as exc:
                raise ClickHouseError(f"cannot reach ClickHouse at {mask_dsn(dsn)}: {exc}") from None
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop(self, client: Client) -> None:
        self._local.client = None
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        client.close()

    def close(self) -> None:
        """Close every client and the pool (blocking; call once, at stop)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
