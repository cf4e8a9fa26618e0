"""Helpers shared by integration tests: read a topic to its end, run the edge in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from ingest.app import EdgeApp
from ingest.server import build_app, server_config
from wxarchive.config import Settings
from wxarchive.net import free_ports


async def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning to the end offsets as they are now, without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # a topic created after the consumer started
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end offsets")
            for batch in (await consumer.getmany(*tps, timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def edge_settings(settings: Settings, **changes: object) -> Settings:
    (port,) = free_ports(1)
    defaults: dict[str, object] = {"edge_port": port, "edge_secret": "s3cret", "edge_id": "edge-test",
                                   "topic_prefix": f"t{uuid.uuid4().hex[:10]}", "kafka_partitions": 2}
    return dataclasses.replace(settings, **{**defaults, **changes})


@contextlib.asynccontextmanager
async def running_edge(settings: Settings, insecure: bool = False) -> AsyncIterator[tuple[str, EdgeApp]]:
    """The edge served by uvicorn inside this event loop; yields its base URL and the app."""
    app = build_app(settings, insecure=insecure, probe_interval=0.2)
    server = uvicorn.Server(server_config(app, settings))
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the edge stopped during start-up")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the edge did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://{settings.edge_host}:{settings.edge_port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)  # a shutdown that hangs fails here, not at the suite's timeout
