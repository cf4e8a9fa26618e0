"""The door's side of the embedded engine: a few read-only sessions in the sink's process, inserts first.

Each slot is a clickhouse-connect chdb client on the sink's own data path (one engine per process: the door
cannot run anywhere else, DESIGN invariant 5). A slot's session is set up once and then locked: the limits
(`max_execution_time`, `max_memory_usage`), then `readonly=1`, which ClickHouse never lets a session leave, so
no query, URL setting or SETTINGS clause can lift them. Under readonly=1 the engine still accepts the settings
it marks harmless (output formats and the like) and refuses the rest with its own READONLY error.

Results are read in blocks of at most `CHUNK_BYTES` on a slot's thread; before each block the slot yields to the
sink's inserts (wxarchive/engine_share.py). clickhouse-connect streams the formats whose blocks concatenate
(TabSeparated, CSV, JSONEachRow, RowBinary, Native) when a query brings no settings of its own; other formats
(JSON with its header and footer, Pretty…) come back whole, bounded by the memory limit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from wxarchive.clickhouse import keep_settings_on_session, open_client
from wxarchive.engine_share import EngineShare

__all__ = ["CHUNK_BYTES", "DoorEngine", "Query"]

CHUNK_BYTES = 256 * 1024
WAIT_FOR_INSERTS_SECONDS = 2.0  # the longest a reader yields to inserts before each block


@dataclass(frozen=True)
class Query:
    """One query as the door runs it. `fmt` is None when the SQL names its own FORMAT."""

    sql: str
    fmt: str | None
    database: str
    settings: dict[str, str]
    parameters: dict[str, Any]  # door.request.Verbatim values, or Python values clickhouse-connect formats


class DoorEngine:
    """`slots` read-only sessions; `stream()` runs a query on a free one, yielding its result's blocks."""

    def __init__(self, dsn: str, share: EngineShare, slots: int, max_execution_time: float,
                 max_memory_bytes: int) -> None:
        self._dsn = dsn
        self._share = share
        # priority 10 (lower than the sink's inserts at 1): ClickHouse pauses a running query at its pipeline's
        # steps while one of higher priority runs, which the door's own yield between blocks cannot do
        self._limits = {"max_execution_time": max_execution_time, "max_memory_usage": max_memory_bytes,
                        "priority": 10}
        self._free: queue.Queue[Client] = queue.Queue()
        self._all: list[Client] = []
        self.slots = slots
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open every slot (blocking; call from a thread). The sink has opened the engine already."""
        for _ in range(self.slots):
            client = open_client(self._dsn)
            for name, value in self._limits.items():
                client.command(f"SET {name} = {value}")
            client.command("SET readonly = 1")
            keep_settings_on_session(client)  # else every result would be materialized, not streamed
            self._all.append(client)
            self._free.put(client)

    def stream(self, query: Query) -> Generator[bytes, None, None]:
        """The result's blocks; the engine's own exception if it refuses or fails (before the first block or
        between blocks). Blocks a free slot for the whole result, so the caller bounds concurrency."""
        client = self._free.get()
        try:
            self._share.wait_turn(WAIT_FOR_INSERTS_SECONDS)
            client.database = query.database
            result: Any = client.raw_stream(query.sql, parameters=query.parameters or None,
                                            settings=query.settings or None, fmt=query.fmt)
            try:
                while True:
                    self._share.wait_turn(WAIT_FOR_INSERTS_SECONDS)
                    chunk = result.read(CHUNK_BYTES)
                    if not chunk:
                        return
                    yield bytes(chunk)
            finally:
                result.close()
        finally:
            self._free.put(client)

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            client.close()
