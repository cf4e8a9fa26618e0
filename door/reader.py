"""How a reader (`wxarchive sql`, the API, later the alerter and the console) reaches the archive: over http(s).

Embedded mode: the door the sink serves, `http://USER:PASSWORD@DOOR_HOST:DOOR_PORT`, with the password the door
keeps in the data directory; a server: WXARCHIVE_READ_DSN, else WXARCHIVE_CLICKHOUSE_DSN. So embedded and server
mode run the same client code. Every statement passes the door's own check (door/statements.py) before it is
sent, so a reader of a server refuses what the door refuses, and says so the same way.

When nothing serves the door (the stack is not running), `read()` opens the embedded archive itself, under the
same guard and the same locked read-only session as the door: a user can query an archive at rest.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from door.engine import DoorEngine, Query
from door.failures import Failure, from_engine
from door.password import door_password
from door.statements import named_format, refusal
from wxarchive.clickhouse import open_client, parse_dsn
from wxarchive.config import Settings, mask_dsn
from wxarchive.engine_share import EngineShare
from wxarchive.errors import ClickHouseError

__all__ = ["DoorRefused", "checked", "embedded", "read", "reader_dsn"]


class DoorRefused(ClickHouseError):
    """ClickHouse (or the door's check) refused the query; `failure` holds its code, name and message."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"Code: {failure.code}. {failure.message} ({failure.name})", failure.code)
        self.failure = failure
        self.http_status = failure.status


def checked(sql: str) -> str:
    """The statement as it will be sent (without a trailing `;`), or DoorRefused with the door's reason."""
    refused = refusal(sql)
    if refused is not None:
        raise DoorRefused(Failure(refused.code, refused.name, refused.message))
    return sql.strip().rstrip(";").strip()


def embedded(settings: Settings) -> bool:
    return not settings.read_dsn and parse_dsn(settings.clickhouse_dsn).embedded


def reader_dsn(settings: Settings) -> str:
    """The http(s) DSN readers use (see the module docstring)."""
    if settings.read_dsn:
        return settings.read_dsn
    if not parse_dsn(settings.clickhouse_dsn).embedded:
        return settings.clickhouse_dsn
    password = door_password(settings, create=False)
    return f"http://{settings.door_user}:{password}@{settings.door_host}:{settings.door_port}"


def read(settings: Settings, sql: str, fmt: str, options: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The result of one read-only statement in format `fmt` (unless the SQL names its own), in blocks. Raises
    DoorRefused with ClickHouse's code and message when it is refused or fails, ClickHouseError when nothing
    can be reached."""
    sql = checked(sql)
    fmt_arg = None if named_format(sql) else fmt
    if embedded(settings) and not _listening(settings.door_host, settings.door_port):
        yield from _read_at_rest(settings, Query(sql, fmt_arg, "default", {}, {}))
        return
    dsn = reader_dsn(settings)
    try:
        client = open_client(dsn, **(options or {}))
    except ClickHouseError as exc:
        raise ClickHouseError(f"cannot reach ClickHouse at {mask_dsn(dsn)}: {exc}") from None
    try:
        stream: Any = client.raw_stream(sql, fmt=fmt_arg)  # the sync client's is an io.IOBase
        while chunk := stream.read(256 * 1024):
            yield bytes(chunk)
    except ClickHouseError:
        raise
    except Exception as exc:  # clickhouse-connect carries the server's text: its code, name and message
        raise DoorRefused(from_engine(exc)) from None
    finally:
        client.close()


def _listening(host: str, port: int) -> bool:
    """Whether anything accepts connections at the door's address (asked without a client, which would log
    its retries)."""
    if not port:
        return False
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def _read_at_rest(settings: Settings, query: Query) -> Iterator[bytes]:
    """No door answers: open the embedded archive here, under the door's own locked session."""
    engine = DoorEngine(settings.clickhouse_dsn, EngineShare(), 1, settings.door_max_execution_time,
                        settings.door_max_memory_bytes)
    try:
        engine.open()
        yield from engine.stream(query)
    except ClickHouseError:
        raise
    except Exception as exc:
        raise DoorRefused(from_engine(exc)) from None
    finally:
        engine.close()
