"""The dedupe state against its changelog on the real broker: what a crash before `remember` leaves behind."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streams.dedupe_state import DedupeState
from wxarchive.config import Settings
from wxarchive.kafka_clients import durable_producer
from wxarchive.topics import dedupe_changelog, ensure_topics

HOUR_MS = 3600 * 1000
NOW = 1_790_000_000_000


def _state(s: Settings, store: str, path: Path) -> DedupeState:
    return DedupeState(store, path, dedupe_changelog(s).name(s), s.kafka_bootstrap, horizon_ms=24 * HOUR_MS)


def _run(s: Settings, scenario: Callable[[AIOKafkaProducer], Awaitable[None]]) -> None:
    """Run `scenario` with the changelog topic created and a producer for `remember`."""

    async def main() -> None:
        await ensure_topics(s, dedupe_changelog(s))
        producer = durable_producer(s.kafka_bootstrap)
        await producer.start()
        try:
            await scenario(producer)
        finally:
            await producer.stop()

    asyncio.run(main())


def test_identities_reach_the_changelog_only_when_remembered(settings: Settings, topic_name, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = dataclasses.replace(settings, topic_prefix=topic_name("d"), kafka_partitions=2)

    async def scenario(producer: AIOKafkaProducer) -> None:
        first = _state(s, "rocksdb://", tmp_path / "a")
        await first.catch_up([0, 1])
        assert not first.is_duplicate(0, "wxid_a|1", NOW) and not first.is_duplicate(1, "wxid_b|2", NOW)
        assert first.is_duplicate(0, "wxid_a|1", NOW)  # the same identity twice in one batch
        # the process dies here, outputs unacknowledged: nothing of the batch may be remembered anywhere
        first.close()
        crashed = _state(s, "memory://", tmp_path / "unused")
        await crashed.catch_up([0, 1])
        assert not crashed.is_duplicate(0, "wxid_a|1", NOW)
        crashed.close()

        second = _state(s, "rocksdb://", tmp_path / "a")
        await second.catch_up([0, 1])
        assert not second.is_duplicate(0, "wxid_a|1", NOW) and not second.is_duplicate(1, "wxid_b|2", NOW)
        await second.remember(producer, NOW)
        await second.flush()
        assert second.is_duplicate(0, "wxid_a|1", NOW + HOUR_MS)
        assert not second.is_duplicate(0, "wxid_a|1", NOW + 25 * HOUR_MS)  # past the horizon: news again
        second.forget_pending()
        second.close()

        # another worker taking the partitions over restores them from the changelog alone
        other = _state(s, "memory://", tmp_path / "unused")
        await other.catch_up([0, 1])
        assert other.restored == 2 and other.is_duplicate(1, "wxid_b|2", NOW + HOUR_MS)
        other.close()

        # the same worker restarted reads nothing it has applied already
        again = _state(s, "rocksdb://", tmp_path / "a")
        await again.catch_up([0, 1])
        assert again.restored == 0 and again.is_duplicate(0, "wxid_a|1", NOW + HOUR_MS)
        again.close()

    _run(s, scenario)


def test_a_store_ahead_of_a_recreated_changelog_reads_it_whole(settings: Settings, topic_name, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = dataclasses.replace(settings, topic_prefix=topic_name("d"), kafka_partitions=1)

    async def scenario(producer: AIOKafkaProducer) -> None:
        state = _state(s, "rocksdb://", tmp_path / "a")
        await state.catch_up([0])
        state.is_duplicate(0, "wxid_a|1", NOW)
        await state.remember(producer, NOW)
        await state.flush()
        state.stores[0].mark_applied(500)  # as if it had applied offset 500 of a topic since recreated
        state.close()
        reopened = _state(s, "rocksdb://", tmp_path / "a")
        await reopened.catch_up([0])
        assert reopened.restored == 1
        reopened.close()

    _run(s, scenario)
