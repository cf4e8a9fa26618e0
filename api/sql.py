"""Read-only SQL for analysts, under the API's caps: the door's statement check first, then the query through the
reader, its result read as it streams and cut off the moment it passes the row or byte cap.

Why the caps are counted here: the door's sessions are locked to readonly=1, which refuses every setting that
changes a limit (max_result_rows, result_overflow_mode, max_execution_time included), and a server's reader may be
locked the same way. So the API counts rows and bytes itself while the result arrives, stops reading past a cap
(closing the stream ends the query's transfer) and answers 413, never a silently cut result. Time: a server whose
reader may change settings gets `max_execution_time`; everywhere the API stops waiting after the same number of
seconds (the client's receive timeout and a deadline between blocks), and in embedded mode the door's own
max_execution_time ends the query on its side.

The result is JSON: column names and types, then one array per row, the values as ClickHouse's JSON formats write
them. A statement with its own FORMAT clause is refused (the API answers JSON only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from api.clickhouse import engine_failure
from api.context import SqlLimits
from api.errors import ApiError, QueryTimedOut, ResultTooLarge
from door.failures import from_engine
from door.reader import DoorRefused, checked
from door.statements import named_format
from wxarchive.errors import ClickHouseError

__all__ = ["CappedResult", "check_statement", "run_capped"]

READ_BYTES = 64 * 1024
FORMAT = "JSONCompactEachRowWithNamesAndTypes"


@dataclass
class CappedResult:
    names: list[str]
    types: list[str]
    rows: list[list[Any]]
    bytes: int


def check_statement(sql: str) -> str:
    """The statement as it will run, or why not: DoorRefused (400/403, ClickHouse's words) for what the door
    refuses, ApiError for a FORMAT clause."""
    statement = checked(sql)
    if named_format(statement):
        raise ApiError("leave out the FORMAT clause: the API answers JSON (columns, types and rows)")
    return statement


def run_capped(client: Client, sql: str, limits: SqlLimits) -> CappedResult:
    """Run `sql` and read its result up to the caps (blocking: call on the reader's thread)."""
    deadline = time.monotonic() + limits.timeout_s
    readonly = client.server_settings.get("readonly")
    settings = {"max_execution_time": int(limits.timeout_s)} if readonly is not None and readonly.value == "0" else {}
    try:
        stream: Any = client.raw_stream(sql, fmt=FORMAT, settings=settings or None)
    except Exception as exc:  # refused or failed before any result: ClickHouse's own code and words
        raise _failure(exc, limits) from None
    result = CappedResult([], [], [], 0)
    pending = b""
    try:
        while True:
            try:
                chunk = stream.read(READ_BYTES)
            except Exception as exc:
                raise _failure(exc, limits) from None
            if not chunk:
                break
            result.bytes += len(chunk)
            if result.bytes > limits.max_bytes:
                raise ResultTooLarge(f"the result is larger than {limits.max_bytes} bytes, the API's cap: select "
                                     "fewer columns or rows (LIMIT), or aggregate")
            if time.monotonic() > deadline:
                raise _timed_out(limits)
            pending += bytes(chunk)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _take(result, line, limits)
        if pending.strip():
            _take(result, pending, limits)
    finally:
        stream.close()
    return result


def _take(result: CappedResult, line: bytes, limits: SqlLimits) -> None:
    if not line.strip():
        return
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:  # the server writes a failure that happens mid-result into the body
        raise DoorRefused(from_engine(Exception(line.decode(errors="replace")))) from None
    if not result.names:
        result.names = [str(v) for v in value]
    elif not result.types:
        result.types = [str(v) for v in value]
    else:
        if len(result.rows) >= limits.max_rows:
            raise ResultTooLarge(f"the result has more than {limits.max_rows} rows, the API's cap: add a LIMIT or "
                                 "aggregate")
        result.rows.append(value)


def _failure(exc: Exception, limits: SqlLimits) -> Exception:
    """What a failure of the query or its transfer means for the caller."""
    failure = engine_failure(exc)
    if failure.name == "TIMEOUT_EXCEEDED" or "timed out" in str(exc).lower():  # the server's limit, or the client's
        return _timed_out(limits)
    if failure.code == 1002:  # no ClickHouse code: nothing answered
        return ClickHouseError(f"ClickHouse did not answer the query: {failure.message}")
    return DoorRefused(failure)


def _timed_out(limits: SqlLimits) -> QueryTimedOut:
    return QueryTimedOut(f"the query ran longer than {limits.timeout_s:g} s, the API's limit: narrow it (a time range, "
                         "an account, a LIMIT) or aggregate")
