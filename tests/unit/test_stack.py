"""Which Kafka addresses `wxarchive up` may serve with the local broker, and which must already answer."""

import asyncio
from pathlib import Path

import aiohttp
import pytest

from commands.stack import Component, Stack, served_locally, worker_flags
from eyun.breaker import BreakerState, CircuitBreaker
from eyun.directory import Directory
from eyun.fake_server import DEFAULT_TOKEN, FakeEyun
from streams.metrics import serve_worker_ops
from streams.worker import Worker
from tests.support import run_with_fake_eyun
from tests.unit.test_enrichment import message
from wxarchive.config import Settings


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "localhost:9092", "127.0.0.2:19092", "[::1]:9092",
                                       "127.0.0.1:9092,localhost:9093"])
def test_loopback_is_local(bootstrap: str) -> None:
    assert served_locally(bootstrap)


@pytest.mark.parametrize("bootstrap", ["kafka-1.internal:9092", "10.0.0.5:9092", "127.0.0.1:9092,broker:9092"])
def test_anything_else_must_already_answer(bootstrap: str) -> None:
    assert not served_locally(bootstrap)


def test_an_open_e云_breaker_shows_in_the_worker_metrics_and_in_up(tmp_path: Path) -> None:
    """The worker's E云 breaker opening, read by `up` from the worker's /metrics: flagged in the report, and said
    when it happens and when it ends. The worker is not started (no Kafka here), so Kafka is flagged as well."""
    said: list[str] = []

    async def scenario(fake: FakeEyun, url: str) -> None:
        settings = Settings.load(env={"WXARCHIVE_DATA_DIR": str(tmp_path), "WXARCHIVE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                                      "WXARCHIVE_EYUN_URL": url, "WXARCHIVE_EYUN_TOKEN": DEFAULT_TOKEN,
                                      "WXARCHIVE_WORKER_STORE": "memory://"})
        worker = Worker(settings)
        assert worker.enricher.client is not None
        worker.enricher.client.breaker = breaker = CircuitBreaker(threshold=2, cooldown=0.2)
        worker.enricher.client.pacing = (0.0, 0.0)
        worker.enricher.bound = 0.5  # a contact found is published to Kafka, which is not here: do not wait for it
        ops, ops_url = await serve_worker_ops(worker, "127.0.0.1", 0)
        d = fake.directory
        try:
            component = Component("worker", True, f"{ops_url}/metrics", "dedupe state memory://")
            component.flags = await worker_flags(component.where)
            assert set(component.flags) == {"kafka"}  # no Kafka here; E云 not yet called
            watch = asyncio.create_task(Stack.watch_worker(component, said.append, every_s=0.05))
            fake.knobs.failure_rate = 1.0
            for n in range(20):
                await worker.enricher.enrich([message(0, d, d.accounts[0].friends[n])])
                if breaker.state is BreakerState.OPEN:
                    break
            await asyncio.sleep(0.3)
            metrics = await _get(f"{ops_url}/metrics")
            assert "wxarchive_worker_eyun_breaker_open 1.0" in metrics
            assert "wxarchive_worker_eyun_breaker_opened_total 1.0" in metrics
            report = Stack(settings, components=[component]).report()
            assert "!! E云 circuit breaker OPEN: lookups failing, messages archived without names (opened 1 time;" in report
            fake.knobs.failure_rate = 0.0
            for n in range(20, 40):  # half-open after the cooldown: the next lookup is the trial, and succeeds
                await worker.enricher.enrich([message(0, d, d.accounts[0].friends[n])])
                if breaker.state is BreakerState.CLOSED:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            watch.cancel()
            assert "wxarchive_worker_eyun_breaker_open 0.0" in await _get(f"{ops_url}/metrics")
        finally:
            await ops.cleanup()
            await worker.stop()

    run_with_fake_eyun(scenario, Directory.generate(seed=9, accounts=2, friends=50, groups=3))
    assert said == ["worker: E云 circuit breaker OPEN: lookups failing, messages archived without names "
                    "(opened 1 time; see the worker's log)",
                    "worker: E云 circuit breaker closed again: lookups resume"]


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.text()
