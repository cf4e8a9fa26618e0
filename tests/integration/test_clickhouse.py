"""ClickHouse through clickhouse-connect on the embedded engine, and chdb's one-owner rule made clear."""

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from wxarchive.clickhouse import AsyncClickHouse, open_client, parse_dsn
from wxarchive.errors import ClickHouseError


def test_mergetree_create_write_read(open_clickhouse: Callable[..., Client]) -> None:
    client = open_clickhouse()
    client.command("CREATE DATABASE IF NOT EXISTS wxarchive")
    client.command(
        "CREATE TABLE wxarchive.probe (account String, new_msg_id UInt64, content String, ts DateTime64(3)) "
        "ENGINE = MergeTree ORDER BY (account, new_msg_id)"
    )
    when = datetime(2026, 11, 21, 8, 30, 15, 123000, tzinfo=UTC)
    rows = [["wxid_a", 18446744073709551615, "你好 👋", when], ["wxid_b", 1, "", when]]
    client.insert("wxarchive.probe", rows, column_names=["account", "new_msg_id", "content", "ts"])
    result = client.query("SELECT account, new_msg_id, content, toUnixTimestamp64Milli(ts) FROM wxarchive.probe "
                          "ORDER BY account").result_rows
    millis = int(when.timestamp() * 1000)
    assert result == [("wxid_a", 18446744073709551615, "你好 👋", millis), ("wxid_b", 1, "", millis)]
    found = client.query("SELECT count() FROM wxarchive.probe WHERE content LIKE {w:String}", parameters={"w": "%你好%"})
    assert found.result_rows == [(1,)]


def test_data_survives_reopen(chdb_dsn: str) -> None:
    client = open_client(chdb_dsn)
    client.command("CREATE TABLE kept (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.insert("kept", [[7]], column_names=["x"])
    client.close()
    again = open_client(chdb_dsn)
    try:
        assert again.query("SELECT x FROM kept").result_rows == [(7,)]
    finally:
        again.close()


def test_second_process_is_told_who_owns_the_directory(open_clickhouse: Callable[..., Client], chdb_dsn: str) -> None:
    open_clickhouse()
    code = ("import sys\nfrom wxarchive.clickhouse import open_client\nfrom wxarchive.errors import ClickHouseError\n"
            f"try:\n    open_client({chdb_dsn!r})\nexcept ClickHouseError as e:\n    print(e); sys.exit(1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 1
    assert f"is in use by process {os.getpid()}: chdb allows one process per directory" in done.stdout


def test_other_path_in_same_process_is_explained(open_clickhouse: Callable[..., Client], tmp_path: Path) -> None:
    open_clickhouse()
    with pytest.raises(ClickHouseError, match="chdb allows one data path per process"):
        open_client(f"chdb://{tmp_path / 'elsewhere'}")


def test_async_use_goes_through_a_thread(chdb_dsn: str) -> None:
    async def scenario() -> list[tuple[int]]:
        ch = await AsyncClickHouse(chdb_dsn).open()
        try:
            await ch.command("CREATE TABLE t (n UInt32) ENGINE = MergeTree ORDER BY n")
            await ch.command("INSERT INTO t SELECT number FROM numbers(1000)")
            return await ch.query_rows("SELECT sum(n) FROM t")
        finally:
            await ch.close()

    assert asyncio.run(scenario()) == [(499500,)]


@pytest.mark.parametrize(
    ("dsn", "message"),
    [("chdb://", "needs a directory"), ("clickhouse://h:9000", "is chdb://PATH or http"),
     ("var/clickhouse", "is chdb://PATH or http")],
)
def test_bad_dsns(dsn: str, message: str) -> None:
    with pytest.raises(ClickHouseError, match=message):
        parse_dsn(dsn)


def test_relative_chdb_path_is_a_path_not_a_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_dsn("chdb://var/clickhouse").path == tmp_path / "var" / "clickhouse"


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ClickHouseError, match=r"cannot open ClickHouse \(http://wx:\*\*\*\*@127.0.0.1:1\)"):
        open_client("http://wx:pw@127.0.0.1:1", connect_timeout=2)
