"""Kafka clients configured the one way the archive needs them.

Invariant 1 (nothing accepted is lost) lives here: producers wait for all in-sync replicas and are
idempotent, and consumers never auto-commit, so an offset is committed only after the caller's downstream
write succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import ConsumerRecord

from wxarchive.errors import BrokerError

__all__ = ["durable_producer", "manual_commit_consumer", "probe_sync", "publish", "read_partitions", "read_to_end",
           "refuses_the_record", "topic_partitions"]


def durable_producer(bootstrap: str, **overrides: object) -> AIOKafkaProducer:
    """An idempotent acks=all producer: a send that returned has been written to every in-sync replica."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "compression_type": None,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def publish(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Write (key, value) records to `topic` with the durable producer and return once every one is acknowledged
    by all in-sync replicas: how the read side and the CLI record an event before they answer. A None value is
    a tombstone (a compacted topic forgets the key)."""
    producer = durable_producer(bootstrap)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(sent)


RECORD_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError, CorruptRecordException)


def refuses_the_record(exc: BaseException) -> bool:
    """Kafka refused this record for what it is (too large, corrupt), not because Kafka is away: sending it
    again cannot succeed, and other records still can."""
    return isinstance(exc, RECORD_ERRORS)


def manual_commit_consumer(bootstrap: str, group_id: str, *topics: str, **overrides: object) -> AIOKafkaConsumer:
    """A group consumer that commits only when told to, reading from the start of a new group."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


@contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """A failed probe is an answer, not an error: keep aiokafka from logging connection failures meanwhile."""
    logger = logging.getLogger("aiokafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


async def probe(bootstrap: str, timeout: float = 5.0) -> list[str]:
    """Ask the cluster for its topic list: a real request, not an open port, proves the broker serves."""
    with _quiet_aiokafka():
        return await _list_topics(bootstrap, timeout)


async def _list_topics(bootstrap: str, timeout: float) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return sorted(await asyncio.wait_for(admin.list_topics(), timeout))
    except (TimeoutError, KafkaError, OSError) as exc:
        raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout:g}s ({type(exc).__name__}: {exc})") from exc
    finally:
        await admin.close()


def probe_sync(bootstrap: str, timeout: float = 5.0) -> list[str]:
    return asyncio.run(probe(bootstrap, timeout))


async def read_to_end(bootstrap: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every record of `topic`, from the beginning to its end offsets as they are now, without a group.
    aiokafka logs transient errors it retries itself (a new topic's partitions not loaded yet): held back here."""
    with _quiet_aiokafka():
        return await _read_to_end(bootstrap, topic, None, timeout)


async def read_partitions(bootstrap: str, topic: str, starts: dict[int, int], timeout: float = 30.0
                          ) -> list[ConsumerRecord]:
    """The records of the given partitions from the given offsets to their end offsets as they are now. A start
    below what retention kept reads from the earliest record; one beyond the end (the topic was recreated)
    reads the whole partition."""
    with _quiet_aiokafka():
        return await _read_to_end(bootstrap, topic, starts, timeout)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic` as the cluster knows it now, also for a topic created after the consumer
    started. aiokafka has no public call that refreshes what `partitions_for_topic` reads, so this is the one
    place that reaches into its client."""
    await consumer._client.force_metadata_update()  # noqa: SLF001
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def _read_to_end(bootstrap: str, topic: str, starts: dict[int, int] | None, timeout: float
                       ) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed",
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [tp for tp in await topic_partitions(consumer, topic) if starts is None or tp.partition in starts]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        firsts = await consumer.beginning_offsets(tps)
        for tp in tps:
            start = 0 if starts is None else starts[tp.partition]
            consumer.seek(tp, firsts[tp] if start > ends[tp] or start < firsts[tp] else start)
        records: list[ConsumerRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            if loop.time() > deadline:
                raise BrokerError(f"reading {topic} did not reach its end within {timeout:g}s")
            for batch in (await consumer.getmany(*tps, timeout_ms=500)).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return records
    finally:
        await consumer.stop()
