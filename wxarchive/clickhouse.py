"""ClickHouse clients from one DSN: `chdb://PATH` (embedded engine) or `http(s)://…` (a server).

Both go through clickhouse-connect, so the same SQL and the same client API serve the embedded mode and a
cluster. chdb's rules, verified with chdb 4.4 / engine 26.9 (see docs/local-stack.md):
- One OS process per data path. A second process fails with an opaque "Error initializing
  EmbeddedServer"; we name the owner (its pid is in PATH/status) because in embedded mode the sink
  process is the one owner and everything else must read through it (DESIGN invariant 5). The engine
  also prints its own "Code: 76 … Cannot lock file" line straight to file descriptor 2 from C++; the
  open holds fd 2 back so that a user sees only our one-line explanation.
- One path per process: a different path opens only after every client of the first one is closed.
- No async client: AsyncClickHouse runs the sync client on one dedicated thread (a client serializes its
  calls anyway; use one client per thread for parallel queries).

Everything that reads the archive for a person reads it through the door's guard (door/statements.py, and a
session locked to readonly=1: door/engine.py), in embedded mode over the door itself (door/reader.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from wxarchive.config import mask_dsn
from wxarchive.errors import ClickHouseError

__all__ = ["AsyncClickHouse", "keep_settings_on_session", "open_client", "parse_dsn"]


@dataclass(frozen=True)
class Target:
    """Where a DSN points: an embedded chdb directory (`path`) or a server URL."""

    embedded: bool
    path: Path | None
    dsn: str

    @property
    def display(self) -> str:
        return f"chdb {self.path}" if self.embedded else mask_dsn(self.dsn)


def parse_dsn(dsn: str) -> Target:
    """`chdb://PATH` takes PATH literally (relative paths allowed), unlike a URL whose first part is a host."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("chdb", "http", "https"):
        raise ClickHouseError(f"a ClickHouse DSN is chdb://PATH or http(s)://host:port, got {mask_dsn(dsn)!r}")
    if scheme != "chdb":
        return Target(embedded=False, path=None, dsn=dsn)
    if not rest:
        raise ClickHouseError("chdb:// needs a directory, for example chdb://var/clickhouse")
    path = Path(rest).expanduser().resolve()
    return Target(embedded=True, path=path, dsn=f"chdb://{path}")


def keep_settings_on_session(client: Client) -> None:
    """Stop resending a chdb client's own settings with every query.

    clickhouse-connect applies a chdb client's settings (its defaults `date_time_input_format=best_effort`,
    `cast_string_to_dynamic_use_inference=1`, and any set later) to the engine session with SET, and then also
    sends them with each query; a query that carries settings is materialized whole instead of streamed
    (the process then grows by more than the result). The session keeps them, so the copy is dropped.
    clickhouse-connect 1.12 keeps that copy in `_client_settings`; this is the one place that reaches in."""
    held = getattr(client, "_client_settings", None)
    if isinstance(held, dict):
        held.clear()


def open_client(dsn: str, **options: Any) -> Client:
    """A connected client; a clear ClickHouseError if the engine or server cannot be opened."""
    target = parse_dsn(dsn)
    if target.path is not None:
        target.path.mkdir(parents=True, exist_ok=True)
    try:
        if target.embedded:
            return _open_engine_quietly(target.dsn, options)
        return clickhouse_connect.get_client(dsn=target.dsn, **options)
    except Exception as exc:  # clickhouse-connect raises several unrelated types for "cannot open"
        raise ClickHouseError(_explain(target, exc)) from exc


# a line the engine writes itself when it fails, e.g. "Code: 76. DB::Exception: Cannot lock file …"
_ENGINE_ERROR_LINE = re.compile(rb"^Code: \d+\. DB::Exception: ")
_FD2 = threading.Lock()


def _open_engine_quietly(dsn: str, options: dict[str, Any]) -> Client:
    """Open chdb with file descriptor 2 held in a temporary file, then written back, less the engine's own
    exception lines if the open failed.

    When the directory is locked, chdb's C++ code prints "Code: 76. DB::Exception: Cannot lock file …"
    straight to fd 2 before clickhouse-connect raises, so a user saw ClickHouse's raw line above our
    explanation of it. Held and written back rather than sent to /dev/null: other threads of this process
    (the sink's logging) write to fd 2 meanwhile, and an open that succeeds keeps everything it printed."""
    with _FD2, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            client = clickhouse_connect.get_client(dsn=dsn, **options)
            failed = False
            return client
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
            _write_fd2(b"".join(ln for ln in lines if not (failed and _ENGINE_ERROR_LINE.match(ln))))


def _write_fd2(data: bytes) -> None:
    while data:
        data = data[os.write(2, data):]


def _explain(target: Target, exc: Exception) -> str:
    text = str(exc)
    if target.path is not None and "EmbeddedServer already initialized with path" in text:
        return (
            f"this process already has another embedded ClickHouse open; chdb allows one data path per "
            f"process, so close those clients before opening {target.path}"
        )
    if target.path is not None and "Error initializing EmbeddedServer" in text:
        owner = owner_pid(target.path)
        who = f"process {owner}" if owner else "another process"
        return (
            f"the embedded ClickHouse at {target.path} is in use by {who}: chdb allows one process per "
            f"directory, so read through that process (in embedded mode, the sink) or stop it first"
        )
    return f"cannot open ClickHouse ({target.display}): {text.strip().splitlines()[0] if text.strip() else type(exc).__name__}"


def owner_pid(path: Path) -> int | None:
    """The pid the engine wrote into PATH/status, if that process is still alive."""
    try:
        for line in (path / "status").read_text().splitlines():
            if line.startswith("PID:"):
                pid = int(line.split(":", 1)[1])
                os.kill(pid, 0)
                return pid
    except (OSError, ValueError):
        return None
    return None


class AsyncClickHouse:
    """One client driven from asyncio through its own thread, since chdb has no async client."""

    def __init__(self, dsn: str, **options: Any) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._dsn = dsn
        self._options = options
        self._client: Client | None = None

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run any blocking client call (insert, raw_insert, a migration) on the client's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def open(self) -> AsyncClickHouse:
        self._client = await self.call(open_client, self._dsn, **self._options)
        return self

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ClickHouseError("AsyncClickHouse used before open()")
        return self._client

    async def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = await self.call(self.client.query, sql, parameters=parameters)
        return list(result.result_rows)

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return await self.call(self.client.command, sql, parameters=parameters)

    async def close(self) -> None:
        if self._client is not None:
            await self.call(self._client.close)
            self._client = None
        self._executor.shutdown(wait=True)
