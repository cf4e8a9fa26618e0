"""`wxarchive sink`: Kafka topics into ClickHouse tables, every row exactly once as queries see it.

One consumer group reads PREFIX.raw, .messages, .events, .moderation, .contacts, .dlq, .audit and .principals
and buffers rows per topic-partition. When the buffer holds `WXARCHIVE_SINK_BATCH_ROWS` rows or its oldest row is
`WXARCHIVE_SINK_BATCH_SECONDS` old, each topic's rows are inserted as one block carrying a deterministic
deduplication token (`topic:partition:first-last,…` offsets), and only after every insert succeeded are the
offsets committed. So a crash between insert and commit re-reads the same records: the repeated block is
dropped by its token, and any copy that still lands (different batch boundaries after a restart, a
duplicate message from upstream) is collapsed by the table's ReplacingMergeTree key, which the `v_*`
views apply (DESIGN invariant 2).

When ClickHouse is down or refuses, the sink keeps its offsets and retries with backoff (up to 30 s), so
nothing is dropped. A block ClickHouse keeps refusing for its data is split in halves until the record at
fault is found; that record goes to PREFIX.dlq with the reason (`wx-stage: sink`), as does a record that
cannot become a row at all. In embedded mode this process is the one owner of the chdb directory
(DESIGN invariant 5).

Started while Kafka is away, `wxarchive sink` waits for it (wxarchive.kafka_watch) with its health port up,
and its /readyz follows Kafka's reachability for as long as it runs.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from sinks.rows import FEEDS, RowError, TableFeed
from sinks.schema import DATABASE, migrate
from wxarchive.clickhouse import AsyncClickHouse, parse_dsn
from wxarchive.config import Settings
from wxarchive.engine_share import EngineShare
from wxarchive.kafka_clients import durable_producer, manual_commit_consumer
from wxarchive.kafka_watch import KafkaWatch
from wxarchive.topics import (
    AUDIT,
    CONTACTS,
    DLQ,
    EVENTS,
    MESSAGES,
    MODERATION,
    PRINCIPALS,
    RAW,
    ensure_topics,
    max_derived_record_bytes,
)

__all__ = ["Sink", "refused_for_data", "sink_consumer"]

log = logging.getLogger("wxarchive.sink")
MAX_BACKOFF_S = 30.0


class Abandoned(Exception):
    """A flush given up on because the sink is stopping: its records are read again by the next run."""


@dataclass
class SinkStats:
    rows: dict[str, int] = field(default_factory=dict)
    inserts: int = 0
    insert_errors: int = 0
    dead_letters: int = 0
    commits: int = 0
    last_flush_s: float = 0.0
    insert_seconds: float = 0.0
    committed: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass
class _Pending:
    feed: TableFeed
    rows: list[Any] = field(default_factory=list)  # row lists, or JSON lines (bytes)
    records: list[ConsumerRecord] = field(default_factory=list)  # the record behind each row, for the DLQ
    last_offset: int = -1


def sink_consumer(settings: Settings, group: str, *topics: str) -> AIOKafkaConsumer:
    """A batch of rows is ~15 MB of worker records: fetch in large pieces so a batch is one or two round trips
    (at aiokafka's default 1 MB per partition the sink mostly waited on fetches)."""
    return manual_commit_consumer(settings.kafka_bootstrap, group, *topics, max_poll_records=settings.sink_batch_rows,
                                  max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)


class Sink:
    def __init__(self, settings: Settings, clickhouse: AsyncClickHouse | None = None,
                 share: EngineShare | None = None) -> None:
        self.settings = settings
        self.clickhouse = clickhouse or AsyncClickHouse(settings.clickhouse_dsn)
        self.share = share or EngineShare()  # the door's readers yield to inserts marked here
        self._owns_clickhouse = clickhouse is None
        self.feeds = {f"{settings.topic_prefix}.{feed.suffix}": feed for feed in FEEDS}
        self.group = f"{settings.topic_prefix}-sink"
        self.consumer = sink_consumer(settings, self.group, *self.feeds)
        # it dead-letters the worker's records, which may be as large as the topics the worker writes take
        self.producer = durable_producer(settings.kafka_bootstrap, max_request_size=max_derived_record_bytes(settings))
        self.stats = SinkStats()
        self.pending: dict[TopicPartition, _Pending] = {}
        self.buffered = 0
        self.oldest: float | None = None
        self.kafka = KafkaWatch(settings.kafka_bootstrap)
        self._started: set[str] = set()  # the steps of start() done, so a retry does none twice
        self._stopping = asyncio.Event()
        self._started_at: dict[TopicPartition, int] = {}
        self._in_flight: asyncio.Task[None] | None = None
        self._in_flight_rows = 0

    async def start(self) -> None:
        """Topics, ClickHouse and its schema, then the Kafka clients; safe to call again after a Kafka failure
        part-way (each step done is skipped)."""
        if "topics" not in self._started:
            await ensure_topics(self.settings, RAW, MESSAGES, EVENTS, MODERATION, CONTACTS, DLQ, AUDIT, PRINCIPALS)
            self._started.add("topics")
        if self._owns_clickhouse and "clickhouse" not in self._started:
            await self.clickhouse.open()
            self._started.add("clickhouse")
        if "schema" not in self._started:
            applied = await self.clickhouse.call(migrate, self.clickhouse.client)
            if applied:
                log.info("schema migrated", extra={"versions": [m.version for m in applied]})
            self._started.add("schema")
        if "producer" not in self._started:
            await self.producer.start()
            self._started.add("producer")
        await self.consumer.start()
        self._started.add("consumer")
        self.kafka.follow(self.producer.client)

    async def start_when_kafka_answers(self) -> bool:
        """start(), once Kafka answers; False if stop() came first (then only close() is left to do)."""
        return await self.kafka.start_when_up(self.start, self._stopping)

    def not_ready_because(self) -> str:
        """Why /readyz says 503, for the operator; "" when ready (Kafka answering, the consumer started)."""
        if not self.kafka.up:
            return self.kafka.reason
        return "" if "consumer" in self._started else "starting"

    async def run(self) -> None:
        """Consume, buffer and flush until stop(); a clean stop flushes and commits what it holds.
        One flush is in flight while the next batch is read, so Kafka's fetches overlap ClickHouse's inserts.
        Stopped while Kafka is away, the last commit is given up after a grace (KafkaWatch.cut_short_when_away):
        its records are inserted already, and read again and dropped by their tokens after the next start."""
        await self.kafka.cut_short_when_away(self._run(), "the sink's last flush", self._stopping)

    async def _run(self) -> None:
        batch_s = self.settings.sink_batch_seconds
        try:
            while not self._stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=int(min(batch_s, 0.2) * 1000),
                                                      max_records=self.settings.sink_batch_rows)
                for tp, records in batches.items():
                    await self._buffer(tp, records)
                due = self.oldest is not None and time.monotonic() - self.oldest >= batch_s
                if self.buffered >= self.settings.sink_batch_rows or due:
                    await self._start_flush()
            await self.flush()
        except Abandoned as exc:
            log.warning(str(exc))

    @property
    def unflushed(self) -> int:
        """Rows read but not yet inserted and committed."""
        return self.buffered + self._in_flight_rows

    async def _buffer(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        pending = self.pending.get(tp)
        if pending is None:
            pending = self.pending[tp] = _Pending(self.feeds[tp.topic])
        if records:
            self._started_at.setdefault(tp, records[0].offset)
        convert = pending.feed.row
        for record in records:
            pending.last_offset = record.offset
            if convert is None:  # JSON lines: ClickHouse parses them
                row = record.value
            else:
                try:
                    row = convert(record)
                except RowError as exc:
                    await self._dead_letter(record, str(exc))
                    continue
            if row is not None:
                pending.rows.append(row)
                pending.records.append(record)
                self.buffered += 1
        if self.oldest is None and records:
            self.oldest = time.monotonic()

    async def flush(self) -> None:
        """Insert and commit everything read so far."""
        await self._start_flush()
        await self._await_flush()

    async def _start_flush(self) -> None:
        """Wait for the flush in flight (so commits stay in order), then hand the buffer to a new one."""
        await self._await_flush()
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        self._in_flight_rows, self.buffered, self.oldest = self.buffered, 0, None
        self._in_flight = asyncio.create_task(self._flush(batch))

    async def _await_flush(self) -> None:
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            await task

    async def _flush(self, batch: dict[TopicPartition, _Pending]) -> None:
        """Insert one block per table, then commit the batch's offsets (never before)."""
        started = time.perf_counter()
        offsets = {}
        by_topic: dict[str, list[_Pending]] = {}
        for tp in sorted(batch, key=lambda tp: (tp.topic, tp.partition)):
            by_topic.setdefault(tp.topic, []).append(batch[tp])
            offsets[tp] = batch[tp].last_offset + 1
        for parts in by_topic.values():  # one block per table: fewer, larger parts for ClickHouse to merge
            rows = [row for part in parts for row in part.rows]
            if rows:
                await self._insert(parts[0].feed, rows, [record for part in parts for record in part.records])
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # a rebalance gave partitions to another sink meanwhile: it reads them again from the last commit,
            # and what it inserts again is dropped by the same tokens (or collapsed by the tables' keys)
            log.warning("offsets not committed: partitions moved to another sink", extra={"error": str(exc)})
        else:
            self.stats.commits += 1
            self.stats.committed.update(offsets)
        finally:
            self._in_flight_rows = 0
        self.stats.last_flush_s = time.perf_counter() - started

    async def _insert(self, feed: TableFeed, rows: list[Any], records: list[ConsumerRecord]) -> None:
        """Insert until it succeeds; a block refused for its data is split until the bad record is found.
        The token names the offsets, so the same records inserted again are the same block to ClickHouse."""
        token = block_token(records)
        backoff = 0.5
        while True:
            # priority 1: a door query (priority 10, door/engine.py) waits inside the engine while an insert runs
            settings = {"insert_deduplicate": 1, "insert_deduplication_token": token, "priority": 1}
            client = self.clickhouse.client
            began = time.perf_counter()
            try:
                with self.share.writing():
                    if feed.row is None:
                        await self.clickhouse.call(client.raw_insert, f"{DATABASE}.{feed.table}", feed.columns,
                                                   b"\n".join(rows), settings=settings, fmt="JSONEachRow")
                    else:
                        await self.clickhouse.call(client.insert, f"{DATABASE}.{feed.table}", rows,
                                                   column_names=feed.columns, settings=settings)
                self.stats.inserts += 1
                self.stats.insert_seconds += time.perf_counter() - began
                self.stats.rows[feed.table] = self.stats.rows.get(feed.table, 0) + len(rows)
                return
            except Exception as exc:  # noqa: BLE001 - classified below; nothing is dropped on the way
                if refused_for_data(exc) and feed.table != "dead_letters":  # never a loop through the DLQ
                    if len(rows) == 1:
                        await self._dead_letter(records[0], f"ClickHouse refused the row: {_first_line(exc)}")
                        return
                    half = len(rows) // 2
                    await self._insert(feed, rows[:half], records[:half])
                    await self._insert(feed, rows[half:], records[half:])
                    return
                self.stats.insert_errors += 1
                log.warning("insert failed; retrying", extra={"table": feed.table, "retry_in_s": backoff,
                                                              "error": _first_line(exc)})
            if self._stopping.is_set():
                raise Abandoned("stopped while ClickHouse was failing; the offsets stay uncommitted")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        headers = [*(record.headers or ()), ("wx-reason", reason.encode()), ("wx-stage", b"sink"),
                   ("wx-source", f"{record.topic}:{record.partition}:{record.offset}".encode())]
        await (await self.producer.send(f"{self.settings.topic_prefix}.{DLQ.suffix}", record.value or b"",
                                        key=record.key, headers=headers))
        self.stats.dead_letters += 1
        log.warning("record set aside to the dead-letter topic",
                    extra={"source": f"{record.topic}:{record.partition}:{record.offset}", "reason": reason})

    def lag(self) -> dict[str, int]:
        """Records not yet committed, per topic-partition (from the consumer's view of the high-water marks)."""
        behind = {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                done = self.stats.committed.get(tp, self._started_at.get(tp, highwater))
                behind[f"{tp.topic}:{tp.partition}"] = max(0, highwater - done)
        return behind

    @property
    def clickhouse_display(self) -> str:
        return parse_dsn(self.settings.clickhouse_dsn).display

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Close what start() opened (the Kafka clients even if never started: aiokafka warns of unclosed ones)."""
        await self.kafka.close()
        opened, self._started = self._started, set()  # not ready from here on
        try:
            await self.consumer.stop()
        except asyncio.CancelledError:
            # aiokafka 0.14 stopped while Kafka is away: Fetcher.close awaits a fetch task it has just cancelled
            # in its retry backoff and re-raises that cancellation; the consumer is closed all the same
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        await self.producer.stop()
        if self._owns_clickhouse and "clickhouse" in opened:
            await self.clickhouse.close()


def block_token(records: list[ConsumerRecord]) -> str:
    """`topic:partition:first-last,…` for the records of a block: the same records give the same token."""
    ranges: dict[int, list[int]] = {}
    for record in records:
        span = ranges.setdefault(record.partition, [record.offset, record.offset])
        span[0], span[1] = min(span[0], record.offset), max(span[1], record.offset)
    return str(records[0].topic) + ":" + ",".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(ranges.items()))


# ClickHouse error codes that mean "this data cannot go into this table", as opposed to the server being
# unavailable, overloaded or misconfigured (retried: the rows are fine)
DATA_ERROR_CODES = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 377, 457, 467, 469})


def refused_for_data(exc: BaseException) -> bool:
    """A refusal that no retry can fix: a data error code from ClickHouse, or the client failing to encode a
    value (an overflow, a wrong type). Connection and server-side trouble is not."""
    if isinstance(exc, OperationalError):
        return False
    if isinstance(exc, DataError):  # the client could not encode a value for its column
        return True
    if isinstance(exc, DatabaseError):  # clickhouse-connect carries ClickHouse's code (HTTP header or chdb)
        return bool(exc.code in DATA_ERROR_CODES)
    return isinstance(exc, (ValueError, TypeError, OverflowError, struct.error, UnicodeError))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
