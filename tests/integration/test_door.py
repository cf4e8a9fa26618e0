"""The door: the sink's read-only ClickHouse HTTP interface, as ClickHouse clients see it.

One archive for the module: the session broker, the fake E云, a worker and the sink (with its door) over 600
simulated callbacks, run on a thread of their own while the tests read through the door with clickhouse-connect's
ordinary http:// client, curl-like urllib requests and `wxarchive sql`, and compare with a chdb client opened
in this same process (the one process that may open the directory).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from door.statements import OUTSIDE_FUNCTIONS
from eyun.directory import Directory
from eyun.fake_server import FakeEyun, serve
from eyun.traffic import DEMO_KEYWORDS, TrafficConfig, TrafficGenerator
from moderation.keyword_admin import write_rules
from schemas.keywords import KeywordRule
from sinks.service import SinkService, serve as serve_sink
from streams.worker import Worker
from tests.support import publish_raw
from wxarchive.clickhouse import open_client
from wxarchive.config import Settings
from wxarchive.net import free_ports

DOCS = Path(__file__).parents[2] / "docs" / "clickhouse.md"
CALLBACKS = 600

# table functions that read only the archive or make their rows up: everything else must be in OUTSIDE_FUNCTIONS
INSIDE_FUNCTIONS = {
    "SQLStandardValues", "format", "fuzzJSON", "fuzzQuery", "generateRandom", "generateSeries", "generate_series",
    "loop", "merge", "mergeTreeAnalyzeIndexes", "mergeTreeAnalyzeIndexesUUID", "mergeTreeCodecBlockCounts",
    "mergeTreeIndex", "mergeTreeProjection", "mergeTreeTextIndex", "null", "numbers", "numbers_mt", "primes",
    "prometheusQuery", "prometheusQueryRange", "timeSeriesData", "timeSeriesMetricFamilies", "timeSeriesMetrics",
    "timeSeriesSamples", "timeSeriesSelector", "timeSeriesTags", "values", "view", "viewExplain", "viewIfPermitted",
    "zeros", "zeros_mt",
}


@dataclasses.dataclass
class Archive:
    settings: Settings
    service: SinkService
    url: str  # with credentials
    base: str  # without
    password: str


class Running:
    """The write path and the door on a thread with its own event loop, until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.archive: Archive | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="archive", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the fixture, which fails the tests with it
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        fake = FakeEyun(Directory.generate(seed=41, accounts=3))
        runner, eyun_url = await serve(fake)
        s = dataclasses.replace(self.settings, eyun_url=eyun_url, eyun_token="fake-eyun-token")
        generator = TrafficGenerator(TrafficConfig(count=CALLBACKS, seed=41, duplicate_rate=0.1, malformed_rate=0.02))
        await publish_raw(s, generator.bodies())
        await write_rules(s, [KeywordRule(w, c, sev) for w, c, sev in DEMO_KEYWORDS])
        worker = Worker(s)
        await worker.start()
        try:
            async with serve_sink(s) as service:
                assert service.door is not None and await service.started()
                expected = generator.summary.expected_unique_messages
                deadline = time.monotonic() + 120
                while (await service.sink.clickhouse.query_rows("SELECT count() FROM wxarchive.v_messages"))[0][0] \
                        < expected:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the archive did not fill in time")
                    await asyncio.sleep(0.5)
                self.archive = Archive(s, service, service.door.url, service.door.base_url, service.door.password)
                self.ready.set()
                await self._stop.wait()
        finally:
            await worker.stop()
            await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def archive(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("door")
    door_port, sink_port = free_ports(2)
    settings = dataclasses.replace(
        Settings.load(env={"WXARCHIVE_DATA_DIR": str(root / "var"), "WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap}),
        topic_prefix=f"door{os.getpid()}", kafka_partitions=2, worker_store="memory://", door_port=door_port,
        sink_port=sink_port, sink_batch_seconds=0.3)
    running = Running(settings)
    running.thread.start()
    running.ready.wait(timeout=180)
    if running.error is not None:
        raise running.error
    assert running.archive is not None, "the archive did not start in time"
    yield running.archive
    running.stop()


@pytest.fixture(scope="module")
def door(archive: Archive) -> Iterator[Client]:
    client = clickhouse_connect.get_client(dsn=archive.url, autogenerate_session_id=False)
    yield client
    client.close()


@pytest.fixture(scope="module")
def direct(archive: Archive) -> Iterator[Client]:
    """A chdb client on the same directory, in this process: what the door's answers are compared with."""
    client = open_client(archive.settings.clickhouse_dsn)
    yield client
    client.close()


def http(archive: Archive, params: dict[str, str] | None = None, body: bytes | None = None,
         headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One request as curl would send it: basic auth unless told otherwise."""
    query = urllib.parse.urlencode(params or {})
    request = urllib.request.Request(f"{archive.base}/?{query}", data=body, headers=headers or {})
    if auth:
        token = base64.b64encode(f"{archive.settings.door_user}:{archive.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S)


def test_every_example_query_answers_as_in_process_chdb(door: Client, direct: Client) -> None:
    queries = doc_queries()
    assert len(queries) >= 6
    for sql in queries:
        through_door = door.query(sql).result_rows
        in_process = direct.query(sql).result_rows
        assert sorted(map(repr, through_door)) == sorted(map(repr, in_process)), sql
    assert door.query("SELECT count() FROM wxarchive.v_messages").result_rows[0][0] > 100


def test_parameters_formats_database_and_query_id(archive: Archive, door: Client) -> None:
    text = "a\tb 'quoted' \\ back\nnew 中文"
    rows = door.query("SELECT {s:String}, {n:UInt64}, {list:Array(String)}, {t:DateTime}",
                      parameters={"s": text, "n": 18446744073709551615, "list": ["x", "y'z"],
                                  "t": "2026-12-02 10:00:00"}).result_rows
    assert rows[0][:3] == (text, 18446744073709551615, ["x", "y'z"])

    # as curl sends them: param_NAME in ClickHouse's escaped form, default_format, database, query_id
    status, headers, body = http(archive, {"query": "SELECT {s:String} AS s, count() AS n FROM v_messages",
                                           "param_s": "tab\\there", "default_format": "JSONEachRow",
                                           "database": "wxarchive", "query_id": "q-42"})
    assert status == 200 and headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Query-Id"] == "q-42" and headers["Content-Type"].startswith("application/x-ndjson")
    row = json.loads(body)
    assert row["s"] == "tab\there" and int(row["n"]) > 100

    status, headers, body = http(archive, body=b"SELECT 1 AS one FORMAT CSVWithNames")
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b'"one"\n1\n', "CSVWithNames")
    status, _, body = http(archive, {"query": "SELECT number FROM numbers(3)"})
    assert (status, body) == (200, b"0\n1\n2\n")  # TabSeparated unless asked otherwise
    status, headers, body = http(archive, {"query": "SELECT 'x' FORMAT TSV", "enable_http_compression": "1"},
                                 headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == b"x\n"
    assert http(archive, {"query": "SELECT 1 FORMAT TSV", "output_format_json_quote_64bit_integers": "0"})[0] == 200


def test_sign_in_as_a_clickhouse_user_would(archive: Archive) -> None:
    user, password = archive.settings.door_user, archive.password
    ok = {"query": "SELECT 1"}
    assert http(archive, ok, auth=False, headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password})[0] == 200
    assert http(archive, {**ok, "user": user, "password": password}, auth=False)[0] == 200
    for params, headers in [({}, {}), ({}, {"X-ClickHouse-User": user, "X-ClickHouse-Key": "wrong"}),
                            ({"user": "default", "password": ""}, {})]:
        status, got, body = http(archive, {**ok, **params}, auth=False, headers=headers)
        assert (status, got["X-ClickHouse-Exception-Code"]) == (403, "516"), body
        assert b"Authentication failed" in body and b"SELECT" not in body
    mixed = http(archive, {**ok, "user": user, "password": password})  # basic auth and parameters at once
    assert mixed[0] == 403 and b"not allowed" in mixed[2]
    assert urllib.request.urlopen(f"{archive.base}/ping", timeout=10).read() == b"Ok.\n"
    assert urllib.request.urlopen(f"{archive.base}/", timeout=10).read() == b"Ok.\n"


def test_errors_read_like_a_servers(archive: Archive, door: Client) -> None:
    for sql, code, name, status in [("SELEC 1", 62, "SYNTAX_ERROR", 400),
                                    ("SELECT * FROM wxarchive.nope", 60, "UNKNOWN_TABLE", 404),
                                    ("SELECT nope()", 46, "UNKNOWN_FUNCTION", 404),
                                    ("SELECT throwIf(1, 'boom')", 395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO", 500)]:
        got, headers, body = http(archive, {"query": sql})
        assert (got, headers["X-ClickHouse-Exception-Code"]) == (status, str(code)), body
        assert re.match(rf"Code: {code}\. DB::Exception: .*\({name}\) \(version [\d.]+\)\n$", body.decode()), body
    with pytest.raises(Exception, match="Code: 60"):
        door.query("SELECT * FROM wxarchive.nope")


WAYS_OUT = [
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT `file`('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM executable('cat /etc/hostname', 'TSV', 'a String')",
    "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT * FROM Python(sys)",
    "SELECT * FROM eval(concat('SELECT fi', 'le(''/etc/hostname'')'))",
    "SELECT 1 INTO OUTFILE '{out}'",
    "CREATE DICTIONARY wxarchive.d (a String) PRIMARY KEY a SOURCE(FILE(path '/etc/hostname' format 'LineAsString')) "
    "LAYOUT(FLAT())",
    "INSERT INTO wxarchive.messages (account) VALUES ('x')",
    "CREATE TABLE wxarchive.t (a UInt8) ENGINE = Memory",
    "DROP TABLE wxarchive.messages",
    "ALTER TABLE wxarchive.messages DELETE WHERE 1",
    "TRUNCATE TABLE wxarchive.messages",
    "KILL QUERY WHERE 1",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 100000",
    "SELECT 1 SETTINGS max_memory_usage = 0",
    "SYSTEM FLUSH LOGS",
    "SELECT 1; DROP TABLE wxarchive.messages",
]


def test_every_way_out_is_shut(archive: Archive, door: Client, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    hostname = Path("/etc/hostname").read_text().strip().encode() if Path("/etc/hostname").exists() else b"\x00"
    for sql in WAYS_OUT:
        sql = sql.format(out=out)
        status, headers, body = http(archive, {"query": sql})
        assert status in (400, 403) and headers["X-ClickHouse-Exception-Code"] in ("164", "62"), (sql, body)
        assert body.startswith(b"Code: ") and hostname not in body, (sql, body)
    # settings in the URL that would lift a limit are refused by the engine; harmless ones pass (above)
    for name, value in [("readonly", "0"), ("max_execution_time", "100000"), ("max_memory_usage", "0")]:
        status, headers, body = http(archive, {"query": "SELECT 1", name: value})
        assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164"), (name, body)
    assert not out.exists()
    assert door.query("SELECT count() FROM wxarchive.v_messages").result_rows[0][0] > 100  # nothing was dropped
    names = {row[0] for row in door.query("SELECT name FROM system.table_functions").result_rows}
    unknown = {n for n in names if n.lower() not in OUTSIDE_FUNCTIONS} - INSIDE_FUNCTIONS
    assert not unknown, f"table functions the door has not judged (add each to OUTSIDE or INSIDE): {unknown}"


def test_a_large_result_is_streamed_not_buffered(archive: Archive, door: Client) -> None:
    """About 600 MB of TSV from the archive's tables reaches the reader while the door's process (which is also
    this reader's) grows by a fraction of it: the engine's blocks pass through, the whole is never held.
    The growth allowed is a fixed working set (the engine's pipeline and the allocator's arenas), well under the
    result; a buffered result would grow the process by at least its size."""
    per_pass = door.query("SELECT sum(length(body)) FROM wxarchive.raw_callbacks").result_rows[0][0]
    passes = 600_000_000 // per_pass + 1
    sql = f"SELECT r.body, k.number FROM numbers({passes}) AS k CROSS JOIN wxarchive.raw_callbacks AS r"
    rss = _rss_mb()
    params = urllib.parse.urlencode({"query": sql})
    token = base64.b64encode(f"{archive.settings.door_user}:{archive.password}".encode()).decode()
    request = urllib.request.Request(f"{archive.base}/?{params}", headers={"Authorization": f"Basic {token}"})
    received = 0
    peak = rss
    with urllib.request.urlopen(request, timeout=300) as response:
        while chunk := response.read(1 << 20):
            received += len(chunk)
            peak = max(peak, _rss_mb())
    assert received > 600_000_000
    assert peak - rss < 200, f"the process grew by {peak - rss:.0f} MB while {received / 1e6:.0f} MB streamed through"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_wxarchive_sql_reads_through_the_door_while_the_sink_holds_the_archive(archive: Archive) -> None:
    s = archive.settings
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(s.data_dir), "WXARCHIVE_DOOR_PORT": str(s.door_port)}
    done = subprocess.run([sys.executable, "-m", "commands", "sql", "SELECT count() > 100 FROM wxarchive.v_messages",
                           "--format", "TSV"], env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "1\n", "")
    refused = subprocess.run([sys.executable, "-m", "commands", "sql", "SELECT file('/etc/hostname')"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "file() reaches outside the archive" in refused.stderr


def test_door_metrics_are_on_the_sinks_port(archive: Archive) -> None:
    text = urllib.request.urlopen(archive.service.ops_url + "/metrics", timeout=10).read().decode()
    assert re.search(r'wxarchive_door_requests_total\{status="200"\} [1-9]', text)
    assert "wxarchive_door_queue_seconds_bucket" in text and "wxarchive_door_refused_total" in text


def test_a_reader_that_leaves_mid_result_frees_its_slot(archive: Archive, door: Client) -> None:
    """A client that reads a little of a large result and hangs up (the API's row cap does this) leaves no query
    running and no slot taken: the door answers the next queries, and its running gauge returns to 0."""
    import http.client

    token = base64.b64encode(f"{archive.settings.door_user}:{archive.password}".encode()).decode()
    for _ in range(archive.settings.door_max_queries + 2):  # more than the slots: a slot kept would block
        conn = http.client.HTTPConnection("127.0.0.1", archive.settings.door_port, timeout=30)
        query = urllib.parse.urlencode({"query": "SELECT r.body FROM numbers(1000) AS k CROSS JOIN "
                                                 "wxarchive.raw_callbacks AS r"})
        conn.request("GET", f"/?{query}", headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        assert response.status == 200 and response.read(1024)
        conn.close()
    assert door.query("SELECT 1").result_rows == [(1,)]
    deadline = time.monotonic() + 10
    while archive.service.door is not None and archive.service.door.stats.running:
        assert time.monotonic() < deadline, "a query kept running after its reader left"
        time.sleep(0.1)
