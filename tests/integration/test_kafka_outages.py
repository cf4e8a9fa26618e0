"""The worker and the sink when Kafka is away: at start (they wait, say so once, and keep their health port up),
while running (they say they are not ready, keep their logs short, and carry on when Kafka is back), and when
told to stop (they do, without a traceback, whether Kafka is there or not)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.kafka_broker import LocalKafka
from eyun.traffic import TrafficConfig, TrafficGenerator
from tests.conftest import broker_spec
from tests.support import publish_raw
from wxarchive.config import Settings
from wxarchive.net import free_ports

OUTAGE_S = 15.0
OUTAGE_LOG_LINES = 50


@pytest.fixture
def idle_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of this test's own, not started: the test starts and stops it when it chooses."""
    broker = LocalKafka(broker_spec(tmp_path / "own-kafka"))
    yield broker
    broker.stop()


@dataclass
class Part:
    """`wxarchive worker` or `wxarchive sink` in a process of its own, its stderr (the log) in a file."""

    name: str
    proc: subprocess.Popen[str]
    log: Path
    url: str

    @classmethod
    def start(cls, name: str, env: dict[str, str], port: int, log_dir: Path) -> Part:
        log = log_dir / f"{name}.log"
        with open(log, "w") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "commands", name], env=env, stdout=subprocess.PIPE,
                                    stderr=stderr, text=True, cwd=Path(__file__).parents[2])
        return cls(name, proc, log, f"http://127.0.0.1:{port}")

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self, timeout: float = 30.0) -> tuple[int, str, float]:
        """SIGTERM; (exit code, stdout, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack into the log, then exit
            out, _ = self.proc.communicate()
        return self.proc.returncode, out, time.monotonic() - started


def _env(tmp_path: Path, bootstrap: str, worker_port: int, sink_port: int) -> dict[str, str]:
    return {**os.environ, "PYTHONFAULTHANDLER": "1", "WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap, "WXARCHIVE_DATA_DIR": str(tmp_path / "var"),
            "WXARCHIVE_TOPIC_PREFIX": f"ko{os.getpid()}", "WXARCHIVE_KAFKA_PARTITIONS": "2",
            "WXARCHIVE_WORKER_STORE": "memory://", "WXARCHIVE_WORKER_PORT": str(worker_port),
            "WXARCHIVE_SINK_PORT": str(sink_port), "WXARCHIVE_SINK_BATCH_SECONDS": "0.5"}


async def _status(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    try:
        async with http.get(url) as response:
            return response.status, await response.json()
    except aiohttp.ClientError:
        return 0, {}


async def _until_status(http: aiohttp.ClientSession, url: str, status: int, timeout: float = 90.0) -> float:
    """Seconds until `url` answers `status`."""
    started = time.monotonic()
    while (await _status(http, url))[0] != status:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{url} did not answer {status} within {timeout:g}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def _metric(http: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def _until_metric(http: aiohttp.ClientSession, url: str, name: str, at_least: float, timeout: float = 90.0,
                        **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while (value := await _metric(http, url, name, **labels)) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}{labels} is {value}, not {at_least}, after {timeout:g}s")
        await asyncio.sleep(0.25)


def test_sigterm_while_waiting_for_kafka_stops_at_once_without_a_traceback(tmp_path: Path) -> None:
    nowhere, worker_port, sink_port = free_ports(3)  # nothing listens on the first: no Kafka there
    env = _env(tmp_path, f"127.0.0.1:{nowhere}", worker_port, sink_port)
    parts = [Part.start("worker", env, worker_port, tmp_path), Part.start("sink", env, sink_port, tmp_path)]

    async def waiting() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for part in parts:
                await _until_status(http, f"{part.url}/healthz", 200, timeout=60)
                status, body = await _status(http, f"{part.url}/readyz")
                assert status == 503 and f"Kafka at 127.0.0.1:{nowhere} is not reachable" in str(body["reason"])
        await asyncio.sleep(5)  # a few retries, none of them logged

    try:
        asyncio.run(waiting())
    finally:
        stopped = [part.stop() for part in parts]
    for part, (code, out, took) in zip(parts, stopped):
        log = part.lines()
        assert code == 0 and took < 5, (part.name, code, took, log)
        assert "stopped" in out and "Traceback" not in "\n".join(log)
        waits = [line for line in log if f"Kafka at 127.0.0.1:{nowhere} is not reachable; retrying every 2s" in line]
        assert len(waits) == 1 and "level=warning" in waits[0]
        assert len(log) <= 3, log  # the wait, and for the worker the note that no E云 is configured


def test_a_late_broker_and_an_outage_while_running(tmp_path: Path, idle_broker: LocalKafka) -> None:
    worker_port, sink_port = free_ports(2)
    env = _env(tmp_path, idle_broker.spec.bootstrap, worker_port, sink_port)
    settings = Settings.load(env={k: v for k, v in env.items() if k.startswith("WXARCHIVE_")})
    first = TrafficGenerator(TrafficConfig(count=200, seed=31, duplicate_rate=0, malformed_rate=0))
    second = TrafficGenerator(TrafficConfig(count=200, seed=32, duplicate_rate=0, malformed_rate=0))
    parts = [Part.start("worker", env, worker_port, tmp_path), Part.start("sink", env, sink_port, tmp_path)]
    worker, sink = parts
    report: dict[str, float] = {}

    async def scenario() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            # 1. started before the broker: waiting, healthy, not ready, and saying why
            for part in parts:
                await _until_status(http, f"{part.url}/healthz", 200, timeout=60)
                status, body = await _status(http, f"{part.url}/readyz")
                assert status == 503 and "not reachable" in str(body["reason"]), body
            await asyncio.to_thread(idle_broker.start)
            report["ready_after_late_start_s"] = max([await _until_status(http, f"{p.url}/readyz", 200) for p in parts])
            await publish_raw(settings, first.bodies())
            await _until_metric(http, worker.url, "wxarchive_worker_records_total", 200, result="archived")
            await _until_metric(http, sink.url, "wxarchive_sink_rows_total", first.summary.expected_unique_messages,
                                table="messages")

            # 2. the broker goes away for OUTAGE_S while both run
            before = {p.name: len(p.lines()) for p in parts}
            stopped_at = time.monotonic()
            await asyncio.to_thread(idle_broker.stop)
            for part in parts:
                status, body = await _status(http, f"{part.url}/readyz")
                if status != 503:
                    await _until_status(http, f"{part.url}/readyz", 503, timeout=10)
                    status, body = await _status(http, f"{part.url}/readyz")
                assert "not reachable" in str(body.get("reason")), (part.name, body)
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
            await asyncio.to_thread(idle_broker.start)
            report["ready_after_outage_s"] = max([await _until_status(http, f"{p.url}/readyz", 200) for p in parts])
            await publish_raw(settings, second.bodies())
            await _until_metric(http, worker.url, "wxarchive_worker_records_total", 400, result="archived")
            total = first.summary.expected_unique_messages + second.summary.expected_unique_messages
            await _until_metric(http, sink.url, "wxarchive_sink_rows_total", total, table="messages")
            for part in parts:
                report[f"{part.name}_log_lines_outage"] = len(part.lines()) - before[part.name]

            # 3. away again, and then told to stop
            await asyncio.to_thread(idle_broker.stop)
            for part in parts:
                await _until_status(http, f"{part.url}/readyz", 503, timeout=10)

    try:
        asyncio.run(scenario())
    finally:
        stopped = {part.name: part.stop() for part in parts}
    report.update({f"{name}_stop_while_away_s": took for name, (_, _, took) in stopped.items()})
    print(report)
    for part in parts:
        assert report[f"{part.name}_log_lines_outage"] < OUTAGE_LOG_LINES, (part.name, part.lines())
        code, out, took = stopped[part.name]
        assert code == 0 and took < 20, (part.name, code, took, part.lines()[-20:])
    assert "worker stopped: 400 records, 0 duplicates, 0 dead letters" in stopped["worker"][1]
