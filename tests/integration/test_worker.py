"""The stream worker on the real broker, driven by the simulator: exactly the unique messages come out."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson

from eyun.directory import Directory
from eyun.fake_server import DEFAULT_TOKEN, FakeEyun
from eyun.traffic import DEMO_KEYWORDS, TrafficConfig, TrafficGenerator
from moderation.keyword_admin import write_rules
from schemas.keywords import KeywordRule
from streams.worker import Worker
from tests.support import publish_raw, read_topic, run_with_fake_eyun, until
from wxarchive.config import Settings
from wxarchive.net import free_ports
from wxarchive.topics import (
    CONTACTS,
    DLQ,
    EVENTS,
    MESSAGES,
    MODERATION,
    align_topic_config,
    dedupe_changelog,
    topic_config,
)


def worker_settings(settings: Settings, topic_name: Callable[[str], str]) -> Settings:
    return dataclasses.replace(settings, topic_prefix=topic_name("w"), kafka_partitions=2, worker_store="memory://")


async def count(s: Settings, topic) -> int:  # type: ignore[no-untyped-def]
    return len(await read_topic(s.kafka_bootstrap, topic.name(s)))


def test_duplicates_dropped_malformed_dead_lettered_and_kill_9_loses_nothing(settings: Settings, topic_name) -> None:  # type: ignore[no-untyped-def]
    s = worker_settings(settings, topic_name)
    generator = TrafficGenerator(TrafficConfig(count=3000, seed=21, duplicate_rate=0.2, malformed_rate=0.02))
    bodies = generator.bodies()
    truth = generator.summary
    (ops_port,) = free_ports(1)
    env = {**os.environ, "WXARCHIVE_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "WXARCHIVE_TOPIC_PREFIX": s.topic_prefix,
           "WXARCHIVE_KAFKA_PARTITIONS": "2", "WXARCHIVE_DATA_DIR": str(s.data_dir), "WXARCHIVE_WORKER_STORE": "rocksdb://",
           "WXARCHIVE_WORKER_PORT": str(ops_port)}

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "commands", "worker"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parents[2])
        assert proc.stdout is not None and proc.stdout.readline().startswith("worker archiving")
        return proc

    async def scenario() -> None:
        await publish_raw(s, bodies[:1500])
        first = start()
        try:
            await until(lambda: _metrics_show(ops_port, 'wxarchive_worker_lag{partition="0"} 0.0'), timeout=60)
        finally:
            first.kill()  # kill -9: no shutdown, offsets and state as they happened to be
            first.wait()
        await publish_raw(s, bodies[1500:])
        second = start()
        try:
            try:
                await until(lambda: _all_done(s, truth.expected_unique_messages, truth.expected_unique_events,
                                              truth.malformed), timeout=90)
            except TimeoutError:
                raise AssertionError(f"(messages, events, dead letters) {getattr(_all_done, 'last', None)} != "
                                     f"{(truth.expected_unique_messages, truth.expected_unique_events, truth.malformed)}"
                                     ) from None
            # history re-pushed after the restart: the recovered dedupe state drops all of it
            await publish_raw(s, bodies[:500])
            await until(lambda: _metrics_show(ops_port, 'wxarchive_worker_lag{partition="0"} 0.0'), timeout=60)
            await until(lambda: _metrics_show(ops_port, 'wxarchive_worker_lag{partition="1"} 0.0'), timeout=60)
            await asyncio.sleep(1.0)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
        messages = await read_topic(s.kafka_bootstrap, MESSAGES.name(s))
        identities = {(orjson.loads(r.value)["account"], orjson.loads(r.value)["identity"]) for r in messages}
        assert len(identities) == truth.expected_unique_messages  # nothing lost across the kill
        # a kill -9 may repeat a batch whose offsets were not committed (the sinks remove such copies);
        # the re-pushed history after the restart adds none
        assert len(messages) - len(identities) < 1000
        assert await count(s, MESSAGES) == len(messages) and await count(s, EVENTS) >= truth.expected_unique_events
        dead = await read_topic(s.kafka_bootstrap, DLQ.name(s))
        assert all(dict(r.headers)["wx-stage"] == b"worker" and dict(r.headers)["wx-reason"] for r in dead)

    asyncio.run(scenario())


async def _processed(worker: Worker, n: int) -> bool:
    return worker.stats.processed >= n


async def _all_done(s: Settings, messages: int, events: int, dead: int) -> bool:
    """At least every unique message, event and dead letter is out (a kill -9 may repeat some)."""
    seen = await _unique(s, MESSAGES), await _unique(s, EVENTS), await count(s, DLQ)
    _all_done.last = seen  # type: ignore[attr-defined]
    return seen[0] == messages and seen[1] == events and seen[2] >= dead


async def _unique(s: Settings, topic) -> int:  # type: ignore[no-untyped-def]
    records = await read_topic(s.kafka_bootstrap, topic.name(s))
    return len({(orjson.loads(r.value)["account"], orjson.loads(r.value)["identity"]) for r in records})


def test_a_keyword_added_on_the_topic_applies_without_a_restart(settings: Settings, topic_name) -> None:  # type: ignore[no-untyped-def]
    s = worker_settings(settings, topic_name)
    before = orjson.dumps({"wcId": "wxid_a", "messageType": "60001", "data": {
        "fromUser": "wxid_b", "toUser": "wxid_a", "content": "周末去网-賭吗", "newMsgId": 1, "timestamp": 1700000000}})
    after = before.replace(b'"newMsgId":1', b'"newMsgId":2')

    async def scenario() -> None:
        worker = Worker(s)
        await worker.start()
        try:
            await publish_raw(s, [before])
            await until(lambda: _processed(worker, 1))
            assert await count(s, MODERATION) == 0
            started = time.monotonic()
            await write_rules(s, [KeywordRule("网赌", "gambling", 3)])
            await until(lambda: _keyword_version(worker, 1), timeout=10)
            took = time.monotonic() - started
            await publish_raw(s, [after])
            await until(lambda: _count_is(s, MODERATION, 1), timeout=30)
        finally:
            await worker.stop()
        (hit,) = [orjson.loads(r.value) for r in await read_topic(s.kafka_bootstrap, MODERATION.name(s))]
        assert (hit["word"], hit["matched"], hit["category"], hit["new_msg_id"]) == ("网赌", "网-賭", "gambling", 2)
        assert took < 5.0

    asyncio.run(scenario())


async def _keyword_version(worker: Worker, version: int) -> bool:
    return worker.keywords.version >= version


async def _count_is(s: Settings, topic, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await count(s, topic) == n


def test_simulated_sensitive_messages_all_reach_the_moderation_topic(settings: Settings, topic_name) -> None:  # type: ignore[no-untyped-def]
    s = worker_settings(settings, topic_name)
    generator = TrafficGenerator(TrafficConfig(count=2000, seed=8, duplicate_rate=0.1, sensitive_rate=0.2, malformed_rate=0))
    bodies = generator.bodies()

    async def scenario() -> None:
        await write_rules(s, [KeywordRule(w, c, sev) for w, c, sev in DEMO_KEYWORDS])
        worker = Worker(s)
        await worker.start()
        try:
            assert worker.keywords.version == 1 and len(worker.keywords.rules) == len(DEMO_KEYWORDS)  # read before start
            await publish_raw(s, bodies)
            truth = generator.summary
            await until(lambda: _count_is(s, MESSAGES, truth.expected_unique_messages))
            await until(lambda: _processed(worker, len(bodies)))
        finally:
            await worker.stop()
        hits = [orjson.loads(r.value) for r in await read_topic(s.kafka_bootstrap, MODERATION.name(s))]
        in_text = {(h["account"], h["identity"]) for h in hits if h["field"] == "text"}
        assert len(in_text) == generator.summary.sensitive_messages  # every planted message, each once
        assert {h["category"] for h in hits} == set(generator.summary.sensitive_by_category)
        # and a reply that quotes a planted message repeats its words: flagged through its quoted text
        others = {h["field"] for h in hits if (h["account"], h["identity"]) not in in_text}
        assert others <= {"quoted_text"}

    asyncio.run(scenario())


def test_worker_command_runs_and_stops_on_sigterm(settings: Settings, topic_name) -> None:  # type: ignore[no-untyped-def]
    s = worker_settings(settings, topic_name)
    generator = TrafficGenerator(TrafficConfig(count=200, seed=3, duplicate_rate=0.1, malformed_rate=0))
    bodies = generator.bodies()
    (ops_port,) = free_ports(1)
    env = {**os.environ, "WXARCHIVE_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "WXARCHIVE_TOPIC_PREFIX": s.topic_prefix,
           "WXARCHIVE_WORKER_STORE": "rocksdb://", "WXARCHIVE_WORKER_PORT": str(ops_port),
           "WXARCHIVE_KAFKA_PARTITIONS": "2", "WXARCHIVE_DATA_DIR": str(s.data_dir)}
    asyncio.run(publish_raw(s, bodies))
    proc = subprocess.Popen([sys.executable, "-m", "commands", "worker"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("worker archiving")
        asyncio.run(until(lambda: _count_is(s, MESSAGES, generator.summary.expected_unique_messages), timeout=60))
        # the outputs become visible a moment before the worker counts its batch: wait for the count
        asyncio.run(until(lambda: _metrics_show(ops_port, 'wxarchive_worker_records_total{result="duplicate"} 20.0'),
                          timeout=30))
        metrics = asyncio.run(_get(f"http://127.0.0.1:{ops_port}/metrics"))
        assert 'wxarchive_worker_lag{partition="0"} 0.0' in metrics and 'wxarchive_worker_lag{partition="1"} 0.0' in metrics
        assert "wxarchive_worker_contact_cache_total" in metrics and "wxarchive_worker_eyun_breaker_open 0.0" in metrics
        ready = asyncio.run(_get(f"http://127.0.0.1:{ops_port}/readyz"))
        assert ready.startswith('{"ready": true'), ready
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "worker stopped: 200 records, 20 duplicates, 0 dead letters" in out



def _with_fake_eyun(settings: Settings, knobs: dict[str, object], scenario):  # type: ignore[no-untyped-def]
    """`scenario(settings, fake)` with the settings pointing at a fresh fake E云."""
    run_with_fake_eyun(lambda fake, url: scenario(dataclasses.replace(settings, eyun_url=url, eyun_token=DEFAULT_TOKEN),
                                                  fake), Directory.generate(seed=4, accounts=2), knobs)


def test_messages_carry_names_from_e云(settings: Settings, topic_name) -> None:  # type: ignore[no-untyped-def]
    generator = TrafficGenerator(TrafficConfig(count=300, seed=4, accounts=2, duplicate_rate=0, malformed_rate=0))
    bodies = generator.bodies()
    people = generator.directory.people

    async def scenario(s: Settings, fake: FakeEyun) -> None:
        worker = Worker(s)
        await worker.start()
        try:
            await publish_raw(s, bodies)
            await until(lambda: _count_is(s, MESSAGES, generator.summary.expected_unique_messages))
        finally:
            await worker.stop()
        records = [orjson.loads(r.value) for r in await read_topic(s.kafka_bootstrap, MESSAGES.name(s))]
        named = [r for r in records if r["enriched"]]
        assert len(named) >= 0.9 * len(records)
        for r in named:
            assert r["sender_name"] == people[r["sender"]].nickName
            if r["is_group"]:
                assert r["conversation_name"] == people[r["conversation"]].nickName
        calls = [c for c in fake.calls if c.endpoint == "getContact"]
        assert calls and all(len(c.body["wcId"].split(",")) <= 20 for c in calls)
        assert not any(c.pacing_violation for c in calls)
        snapshots = await read_topic(s.kafka_bootstrap, CONTACTS.name(s))
        assert {r.key.decode().split("|", 1)[1] for r in snapshots} >= {r["sender"] for r in named}

    _with_fake_eyun(worker_settings(settings, topic_name), {"enforce_pacing": True}, scenario)


def test_messages_flow_unnamed_when_e云_fails_every_call(settings: Settings, topic_name) -> None:  # type: ignore[no-untyped-def]
    generator = TrafficGenerator(TrafficConfig(count=300, seed=6, accounts=2, duplicate_rate=0, malformed_rate=0))
    bodies = generator.bodies()

    async def scenario(s: Settings, fake: FakeEyun) -> None:
        worker = Worker(s)
        await worker.start()
        started = time.monotonic()
        try:
            await publish_raw(s, bodies)
            await until(lambda: _count_is(s, MESSAGES, generator.summary.expected_unique_messages), timeout=60)
        finally:
            await worker.stop()
        records = [orjson.loads(r.value) for r in await read_topic(s.kafka_bootstrap, MESSAGES.name(s))]
        assert not any(r["enriched"] for r in records)
        assert time.monotonic() - started < 40
        assert worker.enricher.client is not None and worker.enricher.stats.api_errors > 0

    _with_fake_eyun(worker_settings(settings, topic_name), {"failure_rate": 1.0}, scenario)


def test_dedupe_state_is_bounded_by_the_horizon(settings: Settings, topic_name) -> None:  # type: ignore[no-untyped-def]
    s = worker_settings(settings, topic_name)
    old = [orjson.dumps({"wcId": "wxid_a", "messageType": "60001", "data": {"fromUser": f"wxid_{i}", "toUser": "wxid_a",
                                                                            "content": "hi", "newMsgId": 100 + i}})
           for i in range(20)]

    async def scenario() -> None:
        worker = Worker(s)
        worker.state.horizon_ms, worker.state.sweep_every_ms = 1500, 200
        await worker.start()
        try:
            await publish_raw(s, old)
            await until(lambda: _processed(worker, 20))
            assert len(worker.state) == 20
            await asyncio.sleep(1.6)
            await publish_raw(s, old[:1])  # a batch after the horizon: the sweep runs, then the old copy is news again
            await until(lambda: _processed(worker, 21))
            assert worker.state.expired == 20 and len(worker.state) == 1
        finally:
            await worker.stop()
        assert await count(s, MESSAGES) == 21  # older than the horizon: archived again, for the sinks to remove
        # the changelog expires by retention a day after the horizon, so a restore after a restart stays bounded
        configs = await topic_config(s, dedupe_changelog(s))
        assert configs["cleanup.policy"] == "delete" and int(configs["retention.ms"]) == (7 + 1) * 24 * 3600 * 1000
        # a longer horizon configured later stretches the retention of the existing changelog
        longer = dataclasses.replace(s, worker_dedupe_days=30)
        assert await align_topic_config(longer, dedupe_changelog(longer))
        assert int((await topic_config(s, dedupe_changelog(s)))["retention.ms"]) == 31 * 24 * 3600 * 1000
        assert not await align_topic_config(longer, dedupe_changelog(longer))

    asyncio.run(scenario())


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.text()


async def _metrics_show(port: int, line: str) -> bool:
    return line in await _get(f"http://127.0.0.1:{port}/metrics")
