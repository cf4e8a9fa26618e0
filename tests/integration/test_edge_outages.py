"""The edge when Kafka is down, frozen or comes back, and when the edge itself is killed: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from deploy.kafka_broker import LocalKafka
from tests.conftest import broker_spec
from tests.fixtures.callbacks import ACCOUNT
from tests.support import edge_settings, read_topic, running_edge
from wxarchive.config import Settings
from wxarchive.topics import RAW

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker this test may stop, freeze and restart."""
    broker = LocalKafka(broker_spec(tmp_path / "own-kafka"))
    broker.start()
    yield broker  # the launcher is synchronous: from async code, call it through asyncio.to_thread
    broker.stop()


def _settings(settings: Settings, broker: LocalKafka, **changes: object) -> Settings:
    return edge_settings(settings, kafka_bootstrap=broker.spec.bootstrap, **changes)


def callbacks(n: int, conversations: int = 3) -> list[bytes]:
    return [orjson.dumps({"wcId": ACCOUNT, "messageType": "60001",
                          "data": {"fromUser": f"wxid_peer{i % conversations}", "toUser": ACCOUNT, "content": f"m{i}",
                                   "newMsgId": 10**18 + i, "timestamp": 1_700_000_000 + i}}) for i in range(n)]


async def _wait_for(http: aiohttp.ClientSession, url: str, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with http.get(url) as response:
                if response.status == status:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} never answered {status}")


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        for line in (await response.read()).decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_without_spool_an_outage_is_503(settings: Settings, own_broker: LocalKafka) -> None:
    s = _settings(settings, own_broker)
    first, second = callbacks(2)

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            async with http.post(f"{url}/callback/s3cret", data=first, headers=JSON) as response:
                assert response.status == 200
            await asyncio.to_thread(own_broker.stop)
            await _wait_for(http, f"{url}/readyz", 503)
            started = time.monotonic()
            async with http.post(f"{url}/callback/s3cret", data=second, headers=JSON) as response:
                assert response.status == 503
                assert (await response.json())["message"] == "archive temporarily unavailable; retry"
            assert time.monotonic() - started < 1.0  # known outage: answered at once, not after the bound
            await asyncio.to_thread(own_broker.start)
            await _wait_for(http, f"{url}/readyz", 200)
            async with http.post(f"{url}/callback/s3cret", data=second, headers=JSON) as response:  # E云 re-pushes
                assert response.status == 200
        # two conversations, two partitions: compare as a multiset, since partitions interleave in any order
        assert sorted(r.value for r in await read_topic(s.kafka_bootstrap, RAW.name(s))) == sorted([first, second])

    asyncio.run(scenario())


def test_a_frozen_broker_gets_503_within_the_bound(settings: Settings, own_broker: LocalKafka) -> None:
    s = _settings(settings, own_broker, edge_produce_timeout=1.0)
    (one,) = callbacks(1)

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            pid = (await asyncio.to_thread(own_broker.status)).pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)  # connections stay open, nothing answers: a hung broker
            try:
                started = time.monotonic()
                async with http.post(f"{url}/callback/s3cret", data=one, headers=JSON) as response:
                    assert response.status == 503
                assert 0.9 < time.monotonic() - started < 3.0
            finally:
                os.kill(pid, signal.SIGCONT)

    asyncio.run(scenario())


def test_with_spool_an_outage_is_200_and_delivered_once_in_order(settings: Settings, own_broker: LocalKafka) -> None:
    s = _settings(settings, own_broker, edge_spool=True)
    before, during = callbacks(60)[:10], callbacks(60)[10:]

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            for raw in before:
                async with http.post(f"{url}/callback/s3cret", data=raw, headers=JSON) as response:
                    assert response.status == 200
            await asyncio.to_thread(own_broker.stop)
            await _wait_for(http, f"{url}/readyz", 503)

            async def one(raw: bytes) -> int:
                async with http.post(f"{url}/callback/s3cret", data=raw, headers=JSON) as response:
                    return response.status

            assert await asyncio.gather(*(one(raw) for raw in during[:25])) == [200] * 25  # concurrent: group commit
            for raw in during[25:]:
                assert await one(raw) == 200
            assert await _metric(http, url, "wxarchive_edge_spool_records") == 50
            assert await _metric(http, url, "wxarchive_edge_requests_total") >= 10
            await asyncio.to_thread(own_broker.start)
            deadline = time.monotonic() + 30
            while await _metric(http, url, "wxarchive_edge_spool_records") > 0:
                assert time.monotonic() < deadline, "the spool did not drain"
                await asyncio.sleep(0.1)
            async with http.post(f"{url}/callback/s3cret", data=b'{"wcId":"wxid_after","messageType":"00000"}',
                                 headers=JSON) as response:
                assert response.status == 200
        records = await read_topic(s.kafka_bootstrap, RAW.name(s))
        values = [r.value for r in records]
        assert sorted(values) == sorted(before + during + [b'{"wcId":"wxid_after","messageType":"00000"}'])
        for conversation in {r.key for r in records}:  # each conversation in the order it was accepted
            mine = [r.value for r in sorted(records, key=lambda r: (r.partition, r.offset)) if r.key == conversation]
            sent = [v for v in before + during if v in mine]
            assert mine[: len(sent)] == sent

    asyncio.run(scenario())


def test_kill_9_with_a_full_spool_loses_nothing(settings: Settings, own_broker: LocalKafka, tmp_path: Path) -> None:
    s = _settings(settings, own_broker, edge_spool=True)
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(s.data_dir), "WXARCHIVE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
           "WXARCHIVE_EDGE_PORT": str(s.edge_port), "WXARCHIVE_EDGE_SECRET": "s3cret", "WXARCHIVE_EDGE_ID": "edge-k9",
           "WXARCHIVE_TOPIC_PREFIX": s.topic_prefix, "WXARCHIVE_KAFKA_PARTITIONS": "2"}
    url = f"http://127.0.0.1:{s.edge_port}"
    bodies = callbacks(40)

    def start_edge() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "commands", "edge", "--spool"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def scenario() -> None:
        await asyncio.to_thread(own_broker.stop)
        edge = start_edge()
        try:
            async with aiohttp.ClientSession() as http:
                await _wait_for(http, f"{url}/healthz", 200)
                for raw in bodies:
                    async with http.post(f"{url}/callback/s3cret", data=raw, headers=JSON) as response:
                        assert response.status == 200
        finally:
            edge.kill()  # SIGKILL: no shutdown code runs
            edge.wait()
        await asyncio.to_thread(own_broker.start)
        edge = start_edge()
        try:
            async with aiohttp.ClientSession() as http:
                await _wait_for(http, f"{url}/readyz", 200)
                deadline = time.monotonic() + 30
                while await _metric(http, url, "wxarchive_edge_spool_records") > 0:
                    assert time.monotonic() < deadline, "the spool did not drain after the restart"
                    await asyncio.sleep(0.1)
        finally:
            edge.send_signal(signal.SIGTERM)
            assert edge.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
        assert sorted(r.value for r in await read_topic(s.kafka_bootstrap, RAW.name(s))) == sorted(bodies)

    asyncio.run(scenario())


def test_graceful_shutdown_finishes_requests_in_flight(settings: Settings, own_broker: LocalKafka) -> None:
    s = _settings(settings, own_broker)
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(s.data_dir), "WXARCHIVE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
           "WXARCHIVE_EDGE_PORT": str(s.edge_port), "WXARCHIVE_EDGE_SECRET": "s3cret",
           "WXARCHIVE_TOPIC_PREFIX": s.topic_prefix, "WXARCHIVE_KAFKA_PARTITIONS": "2"}
    url = f"http://127.0.0.1:{s.edge_port}"
    bodies = callbacks(20)

    async def scenario() -> None:
        edge = subprocess.Popen([sys.executable, "-m", "commands", "edge"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            async with aiohttp.ClientSession() as http:
                await _wait_for(http, f"{url}/readyz", 200)
                pid = (await asyncio.to_thread(own_broker.status)).pid
                assert pid is not None
                os.kill(pid, signal.SIGSTOP)  # Kafka slow: the requests below wait on it, in flight

                async def one(raw: bytes) -> int:
                    async with http.post(f"{url}/callback/s3cret", data=raw, headers=JSON) as response:
                        return response.status

                in_flight = [asyncio.create_task(one(raw)) for raw in bodies]
                await asyncio.sleep(0.5)
                edge.send_signal(signal.SIGTERM)  # shut down while they wait
                await asyncio.sleep(0.5)
                os.kill(pid, signal.SIGCONT)
                assert await asyncio.gather(*in_flight) == [200] * len(bodies)
            assert await asyncio.to_thread(edge.wait, 30) in (0, -signal.SIGTERM)
        finally:
            if edge.poll() is None:
                edge.kill()
        assert sorted(r.value for r in await read_topic(s.kafka_bootstrap, RAW.name(s))) == sorted(bodies)

    asyncio.run(scenario())
