"""Invariant 1 on a real broker: acknowledged writes are durable, and only committed offsets are done."""

import asyncio
from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from wxarchive.kafka_clients import durable_producer, manual_commit_consumer


async def _create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, numbers: range, key: Callable[[int], bytes]) -> list:  # type: ignore[type-arg]
    producer = durable_producer(bootstrap)
    await producer.start()
    try:
        return [await producer.send_and_wait(topic, f"m{i}".encode(), key=key(i)) for i in numbers]
    finally:
        await producer.stop()


async def _member_reads(bootstrap: str, group: str, topic: str, want: int, commit: bool) -> list[ConsumerRecord]:
    """One group member's life: read `want` records, check nothing more is waiting, maybe commit, leave."""
    consumer = manual_commit_consumer(bootstrap, group, topic)
    await consumer.start()
    try:
        got: list[ConsumerRecord] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < want and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
        assert not any((await consumer.getmany(timeout_ms=1500)).values())
        if commit:
            await consumer.commit()
        return got
    finally:
        await consumer.stop()


def test_idempotent_producer_and_committing_group(bootstrap: str, topic_name: Callable[[str], str]) -> None:
    topic, group = topic_name("durable"), topic_name("group")

    async def scenario() -> None:
        await _create(bootstrap, topic, partitions=3)
        acks = await _produce(bootstrap, topic, range(40), key=lambda i: f"conv{i % 4}".encode())
        assert len({(a.partition, a.offset) for a in acks}) == 40  # each write acknowledged at its own place

        records = await _member_reads(bootstrap, group, topic, 40, commit=True)
        assert sorted(r.value for r in records) == sorted(f"m{i}".encode() for i in range(40))
        partitions_of: dict[bytes, set[int]] = {}
        for r in records:
            partitions_of.setdefault(r.key, set()).add(r.partition)
        assert all(len(p) == 1 for p in partitions_of.values())  # one key, one partition: a conversation stays ordered

        await _produce(bootstrap, topic, range(40, 45), key=lambda i: b"conv0")
        later = await _member_reads(bootstrap, group, topic, 5, commit=False)  # resumes after the commit
        assert sorted(r.value for r in later) == [f"m{i}".encode() for i in range(40, 45)]
        again = await _member_reads(bootstrap, group, topic, 5, commit=True)  # not committed: redelivered
        assert sorted(r.value for r in again) == [f"m{i}".encode() for i in range(40, 45)]

    asyncio.run(scenario())
