"""The write path end to end on the real broker and embedded ClickHouse: simulator → raw → worker → sink → views."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from eyun.directory import Directory
from eyun.fake_server import FakeEyun
from eyun.traffic import DEMO_KEYWORDS, TrafficConfig, TrafficGenerator
from moderation.keyword_admin import write_rules
from schemas.callback import PayloadError
from schemas.keywords import KeywordRule
from schemas.message import ArchiveMessage, parse_message
from sinks.sink import Sink
from streams.worker import Worker
from tests.support import publish_raw, read_topic, run_with_fake_eyun, until
from wxarchive.config import Settings
from wxarchive.kafka_clients import durable_producer
from wxarchive.net import free_ports
from wxarchive.topics import DLQ, MESSAGES, Topic, ensure_topics

TopicName = Callable[[str], str]  # the topic_name fixture
RECEIVED_MS = 1700000000000  # a receive time for records written straight to the worker's topics


def sink_settings(settings: Settings, topic_name: TopicName, tmp_path: Path, **changes: Any) -> Settings:
    defaults: dict[str, Any] = {"topic_prefix": topic_name("s"), "kafka_partitions": 2, "worker_store": "memory://",
                                   "clickhouse_dsn": f"chdb://{tmp_path / 'clickhouse'}", "sink_batch_rows": 400,
                                   "sink_batch_seconds": 0.3}
    return dataclasses.replace(settings, **{**defaults, **changes})


def unique_messages(bodies: list[bytes]) -> dict[tuple[str, str], ArchiveMessage]:
    """The simulator's bodies parsed and deduplicated by identity, as the archive should hold them."""
    out: dict[tuple[str, str], ArchiveMessage] = {}
    for body in bodies:
        try:
            m = parse_message(body)
        except PayloadError:
            continue
        out.setdefault((m.account, m.identity), m)
    return out


async def rows(sink: Sink, sql: str) -> list[tuple[Any, ...]]:
    return await sink.clickhouse.query_rows(sql)


async def scalar(sink: Sink, sql: str) -> int:
    return int((await rows(sink, sql))[0][0])


def test_views_hold_exactly_the_simulated_archive(settings: Settings, topic_name: TopicName, tmp_path: Path) -> None:
    generator = TrafficGenerator(TrafficConfig(count=2500, seed=31, duplicate_rate=0.2, malformed_rate=0.02))
    bodies = generator.bodies()
    truth = generator.summary
    parsed = unique_messages(bodies)
    messages = [m for m in parsed.values() if m.kind == "message"]

    async def scenario(fake: FakeEyun, url: str) -> None:
        s = sink_settings(settings, topic_name, tmp_path, eyun_url=url, eyun_token="fake-eyun-token")
        received_ms = int(time.time() * 1000)
        await publish_raw(s, bodies, received_ms)
        await write_rules(s, [KeywordRule(w, c, sev) for w, c, sev in DEMO_KEYWORDS])
        worker, sink = Worker(s), Sink(s)
        await worker.start()
        await sink.start()
        task = asyncio.create_task(sink.run())
        try:
            await until(lambda: _counts_are(sink, truth.expected_unique_messages, len(bodies)), timeout=120)
            await asyncio.sleep(1.0)  # anything late (duplicates) would land now
            assert await scalar(sink, "SELECT count() FROM wxarchive.v_messages") == truth.expected_unique_messages
            assert await scalar(sink, "SELECT count() FROM wxarchive.v_account_events") == truth.expected_unique_events
            assert await scalar(sink, "SELECT count() FROM wxarchive.raw_callbacks FINAL") == len(bodies)
            # (account, identity) is unique in the view even where the table still holds a repeated row
            assert await scalar(sink, "SELECT count() FROM (SELECT account, identity FROM wxarchive.v_messages "
                                      "GROUP BY account, identity HAVING count() > 1)") == 0

            # a recall marks its target, and deletes nothing
            targets = {(m.account, m.recalled_new_msg_id) for m in messages if m.recalled_new_msg_id}
            archived = {(m.account, m.new_msg_id) for m in messages}
            recalled = set(await rows(sink, "SELECT account, new_msg_id FROM wxarchive.v_messages WHERE recalled"))
            assert truth.expected_recalls > 0 and recalled == targets & archived

            # last_messages against a brute-force computation over the same messages
            brute: dict[tuple[str, bool, str], list[int]] = defaultdict(list)
            for m in messages:
                brute[(m.account, m.is_group, m.conversation)].append(m.time_ms or received_ms)
            view = await rows(sink, "SELECT account, is_group, conversation, message_count, "
                                    "toUnixTimestamp64Milli(last_time) FROM wxarchive.v_last_messages")
            assert {(a, bool(g), c): (n, t) for a, g, c, n, t in view} == {
                k: (len(times), max(times)) for k, times in brute.items()}

            # names as of archive time, and the contact snapshots behind them
            assert await scalar(sink, "SELECT countIf(enriched) FROM wxarchive.v_messages") > 0
            assert await scalar(sink, "SELECT count() FROM wxarchive.v_contacts WHERE nickname != ''") > 0
            categories = dict(await rows(sink, "SELECT category, uniqExact(account, identity) "
                                               "FROM wxarchive.v_moderation_hits GROUP BY category"))
            assert set(truth.sensitive_by_category) == set(categories)
            assert all(categories[c] >= n for c, n in truth.sensitive_by_category.items())
        finally:
            sink.stop()
            await task
            await worker.stop()
            await sink.close()

    run_with_fake_eyun(scenario, Directory.generate(seed=31, accounts=3))


async def _counts_are(sink: Sink, messages: int, raw: int) -> bool:
    got = (await scalar(sink, "SELECT count() FROM wxarchive.v_messages"),
           await scalar(sink, "SELECT count() FROM wxarchive.raw_callbacks FINAL"))
    return got == (messages, raw)


def _message_doc(account: str, n: int, **changes: object) -> bytes:
    doc = {"account": account, "identity": str(9000 + n), "new_msg_id": 9000 + n, "type_code": "60001",
           "type_name": "text", "is_group": False, "conversation": "wxid_peer", "sender": "wxid_peer",
           "time_ms": RECEIVED_MS + n, "text": f"message {n}", "enriched": False, "received_ms": RECEIVED_MS,
           "source": {"partition": 0, "offset": n}, **changes}
    return orjson.dumps(doc)


def test_refusals_keep_offsets_and_poison_records_go_to_the_dlq(settings: Settings, topic_name: TopicName,
                                                                tmp_path: Path) -> None:
    s = sink_settings(settings, topic_name, tmp_path)
    good = [_message_doc("wxid_acc", n) for n in range(50)]
    not_a_bool = _message_doc("wxid_acc", 50, is_group="maybe")
    no_identity = _message_doc("wxid_acc", 51, identity="")  # refused by the table's CHECK constraint

    async def scenario() -> None:
        sink = Sink(s)
        await sink.start()
        await sink.clickhouse.command("DETACH TABLE wxarchive.messages")  # ClickHouse refuses every insert
        task = asyncio.create_task(sink.run())
        try:
            await publish(s, MESSAGES, [*good[:25], b"{not json", not_a_bool, *good[25:], no_identity])
            await until(lambda: _true(sink.stats.insert_errors >= 2), timeout=30)
            assert not any(tp.topic == MESSAGES.name(s) for tp in sink.stats.committed)  # offsets kept
            await sink.clickhouse.command("ATTACH TABLE wxarchive.messages")
            await until(lambda: _true(sink.stats.dead_letters == 3 and sink.unflushed == 0), timeout=60)
            assert await scalar(sink, "SELECT count() FROM wxarchive.v_messages") == 50
        finally:
            sink.stop()
            await task
            await sink.close()
        dead = await read_topic(s.kafka_bootstrap, DLQ.name(s))
        reasons = {r.value: dict(r.headers)["wx-reason"].decode() for r in dead}
        assert all(dict(r.headers)["wx-stage"] == b"sink" for r in dead)
        assert set(reasons) == {b"{not json", not_a_bool, no_identity}
        assert "Cannot parse JSON" in reasons[b"{not json"] and "Invalid boolean" in reasons[not_a_bool]
        assert "Constraint `identified`" in reasons[no_identity]

    asyncio.run(scenario())


CRASHING_SINK = """
import os, signal, sys
from sinks import service as module
from wxarchive.config import Settings

class CrashBeforeCommit(module.Sink):
    async def start(self):
        await super().start()
        async def commit(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 after the inserts, before the offsets are committed
        self.consumer.commit = commit

module.Sink = CrashBeforeCommit
module.run(Settings.load())
"""


def test_a_sink_killed_between_insert_and_commit_leaves_no_duplicates_or_gaps(settings: Settings, topic_name: TopicName,
                                                                              tmp_path: Path) -> None:
    s = sink_settings(settings, topic_name, tmp_path, sink_batch_rows=100000, sink_batch_seconds=1.0)
    docs = [_message_doc(f"wxid_{n % 3}", n) for n in range(3000)]
    (port,) = free_ports(1)
    env = {**os.environ, "WXARCHIVE_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "WXARCHIVE_TOPIC_PREFIX": s.topic_prefix,
           "WXARCHIVE_KAFKA_PARTITIONS": "2", "WXARCHIVE_CLICKHOUSE_DSN": s.clickhouse_dsn,
           "WXARCHIVE_SINK_PORT": str(port), "WXARCHIVE_SINK_BATCH_SECONDS": "1.0"}

    async def scenario() -> None:
        await ensure_topics(s, MESSAGES)
        await publish(s, MESSAGES, docs)
        child = subprocess.run([sys.executable, "-c", CRASHING_SINK], env=env, cwd=Path(__file__).parents[2],
                               capture_output=True, text=True, timeout=120)
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
        sink = Sink(s)
        await sink.start()
        inserted_before = await scalar(sink, "SELECT count() FROM wxarchive.messages")
        assert inserted_before > 0  # the killed sink did insert; its offsets were never committed
        task = asyncio.create_task(sink.run())
        try:
            await until(lambda: _true(sink.stats.commits > 0 and sink.unflushed == 0 and not any(sink.lag().values())),
                        timeout=60)
            assert await scalar(sink, "SELECT count() FROM wxarchive.v_messages") == len(docs)  # no gaps
            assert await scalar(sink, "SELECT uniqExact(account, identity) FROM wxarchive.v_messages") == len(docs)
        finally:
            sink.stop()
            await task
            await sink.close()

    asyncio.run(scenario())


async def _true(value: bool) -> bool:
    return value


async def publish(s: Settings, topic: Topic, values: list[bytes]) -> None:
    await ensure_topics(s, topic)
    producer = durable_producer(s.kafka_bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic.name(s), value, key=b"wxid_acc|wxid_peer")
        await producer.flush()
    finally:
        await producer.stop()
