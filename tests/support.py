"""Helpers shared by integration tests: read a topic to its end, run the edge in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.structs import ConsumerRecord

from eyun.directory import Directory
from eyun.fake_server import FakeEyun, serve
from ingest.app import EdgeApp
from ingest.service import serve as serve_edge
from schemas.callback import PayloadError
from schemas.message import parse_message
from wxarchive.config import Settings
from wxarchive.kafka_clients import durable_producer, read_to_end
from wxarchive.net import free_ports
from wxarchive.topics import RAW, ensure_topics

T = TypeVar("T")


def run_with_fake_eyun(scenario: Callable[[FakeEyun, str], Awaitable[T]], directory: Directory,
                       knobs: dict[str, object] | None = None) -> T:
    """Run `scenario(fake, url)` against a fresh fake E云 on a free loopback port, then shut the fake down."""
    async def main() -> T:
        fake = FakeEyun(directory)
        fake.knobs.update(knobs or {})
        runner, url = await serve(fake)
        try:
            return await scenario(fake, url)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


async def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord]:
    return await read_to_end(bootstrap, topic, timeout)


def edge_settings(settings: Settings, **changes: Any) -> Settings:
    (port,) = free_ports(1)
    defaults: dict[str, Any] = {"edge_port": port, "edge_secret": "s3cret", "edge_id": "edge-test",
                                   "topic_prefix": f"t{uuid.uuid4().hex[:10]}", "kafka_partitions": 2}
    return dataclasses.replace(settings, **{**defaults, **changes})


@contextlib.asynccontextmanager
async def running_edge(settings: Settings, insecure: bool = False) -> AsyncIterator[tuple[str, EdgeApp]]:
    """The edge served by uvicorn inside this event loop (probing Kafka every 0.2 s); yields its base URL and the
    app."""
    async with serve_edge(settings, insecure=insecure, probe_interval=0.2) as edge:
        yield f"http://{settings.edge_host}:{settings.edge_port}", edge.app


async def publish_raw(s: Settings, bodies: list[bytes], received_ms: int | None = None) -> None:
    """Write callbacks to the raw topic keyed and stamped as the edge does (malformed ones keyed by nothing);
    the receive time is now unless given."""
    stamp = str(received_ms or int(time.time() * 1000)).encode()
    await ensure_topics(s, RAW)
    producer = durable_producer(s.kafka_bootstrap)
    await producer.start()
    try:
        for body in bodies:
            try:
                key = parse_message(body, with_xml=False).kafka_key.encode()
            except PayloadError:
                key = None
            await producer.send(RAW.name(s), body, key=key, headers=[("wx-received-at", stamp)])
        await producer.flush()
    finally:
        await producer.stop()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not get there in time")
        await asyncio.sleep(0.5)
