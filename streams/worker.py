"""`wxarchive worker`: the faust-streaming application that turns PREFIX.raw into the archive's streams.

One agent reads the raw topic in micro-batches (up to 1,000 records or 50 ms), runs streams.processing on
them, sends the outputs and waits for their acknowledgements; then it records the batch's identities in the
dedupe state and its changelog (streams.dedupe_state), and only then does faust move on and commit the
batch's offsets (at-least-once: a crash anywhere repeats work, never skips it).

The sensitive-word list is followed like a global table: every worker reads all partitions of
PREFIX.keywords from the beginning and keeps following it, compiling a new matcher off to the side after
each change and swapping it in, so a word added with `wxarchive keywords add` applies within seconds.

Started while Kafka is away, `wxarchive worker` waits for it (wxarchive.kafka_watch) with its health port up,
and its /readyz follows Kafka's reachability for as long as it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from eyun.client import EyunClient
from moderation.keyword_set import KeywordSet
from streams.dedupe_state import DedupeState
from streams.enrichment import Enricher
from streams.faust_app import create_app, running_consumer
from streams.processing import RawRecord, finish_batch, prepare_batch
from wxarchive.config import Settings
from wxarchive.kafka_clients import durable_producer, read_to_end, topic_partitions
from wxarchive.kafka_watch import KafkaWatch
from wxarchive.topics import (
    CONTACTS,
    DLQ,
    EVENTS,
    KEYWORDS,
    MESSAGES,
    MODERATION,
    RAW,
    align_topic_config,
    dedupe_changelog,
    ensure_topics,
    max_derived_record_bytes,
)

__all__ = ["BATCH_MAX", "BATCH_WITHIN_S", "RAW_CODEC", "Worker"]

log = logging.getLogger("wxarchive.worker")
BATCH_MAX = 1000
BATCH_WITHIN_S = 0.05
RAW_CODEC: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass
class WorkerStats:
    """Counters for the metrics page; `next_offset` is per raw partition, for lag."""

    processed: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    hits: int = 0
    keyword_versions: int = 0
    batches: int = 0
    last_batch_ms: float = 0.0
    busy_ms: float = 0.0
    next_offset: dict[int, int] = field(default_factory=dict)
    keywords_loaded: bool = False


class Worker:
    def __init__(self, settings: Settings, *, web_port: int | None = None) -> None:
        self.settings = settings
        self.keywords = KeywordSet()
        self.stats = WorkerStats()
        self.app: faust.App = create_app(settings, f"{settings.topic_prefix}-worker",
                                         partitions=settings.kafka_partitions, web_port=web_port)
        app = self.app
        self.raw = app.topic(RAW.name(settings), **RAW_CODEC)
        self.topic_names = {t.suffix: t.name(settings) for t in (MESSAGES, EVENTS, MODERATION, DLQ, CONTACTS)}
        # outputs go through one durable aiokafka producer: a batch's sends are fired together and their
        # acknowledgements gathered once, cheaper than faust's per-message send machinery
        self.producer = durable_producer(settings.kafka_bootstrap, linger_ms=5, max_batch_size=512 * 1024,
                                         max_request_size=max_derived_record_bytes(settings))
        self.dedupe_topic = dedupe_changelog(settings)
        self.state = DedupeState(settings.worker_store, settings.data_dir.resolve() / "worker" / f"{settings.topic_prefix}-dedupe",
                                 self.dedupe_topic.name(settings), settings.kafka_bootstrap,
                                 settings.worker_dedupe_days * 24 * 3600 * 1000)
        # faust types a receiver as taking any positional arguments and a `signal` keyword; it calls this one
        # with (app, revoked, signal=...), which **_ takes
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self._stopping = False
        self.kafka = KafkaWatch(settings.kafka_bootstrap)
        self._producer_started = self._app_started = False  # what start() did, so a retry does no step twice
        self.stopped_cleanly = True  # False: stop() gave up on faust, which waits for an absent broker
        client = EyunClient(settings.eyun_url, settings.eyun_token) if settings.eyun_url else None
        if client is None:
            log.warning("no E云 API configured (WXARCHIVE_EYUN_URL): messages are archived without names")
        self.enricher = Enricher(client, self._publish_contact, bound=settings.worker_enrich_timeout,
                                 ttl_ms=settings.worker_contact_ttl_hours * 3600 * 1000)
        app.agent(self.raw, name="archive")(self._archive)
        app.task(self._follow_keywords)

    async def prepare(self) -> None:
        """Before faust starts: the topics exist (faust creates none of them), and the keyword list and contact
        cache are loaded, so no message is moderated against an empty list after a restart."""
        await ensure_topics(self.settings, RAW, DLQ, MESSAGES, EVENTS, MODERATION, KEYWORDS, CONTACTS, self.dedupe_topic)
        if await align_topic_config(self.settings, self.dedupe_topic):
            log.info("dedupe changelog retention set from the horizon", extra=self.dedupe_topic.config)
        for sized in (MESSAGES, EVENTS, DLQ):  # their record size follows the edge's body limit
            if await align_topic_config(self.settings, sized):
                log.info("topic record size set from the body limit", extra={"topic": sized.name(self.settings)})
        for record in await read_to_end(self.settings.kafka_bootstrap, KEYWORDS.name(self.settings), timeout=120):
            self._apply_keyword(record.key, record.value)
        await self.keywords.refresh()
        self.stats.keywords_loaded = True
        for record in await read_to_end(self.settings.kafka_bootstrap, CONTACTS.name(self.settings), timeout=120):
            self.enricher.load(record.key, record.value)

    def _apply_keyword(self, key: bytes, value: bytes | None) -> None:
        try:
            self.keywords.apply(key, value)
        except ValueError as exc:
            log.warning("skipping a malformed keyword record", extra={"error": str(exc)})

    async def _publish_contact(self, key: bytes, value: bytes) -> None:
        await self.producer.send(self.topic_names[CONTACTS.suffix], value, key=key)

    async def _on_revoked(self, app: faust.App, revoked: set[TopicPartition], **_: object) -> None:
        self.state.revoke(tp.partition for tp in revoked if tp.topic == self.raw.get_topic_name())

    async def _archive(self, stream: faust.StreamT[Any]) -> None:
        # take_events is on faust-streaming's Stream, not (yet) on its StreamT protocol
        async for events in cast(faust.Stream[Any], stream).take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            started = time.perf_counter()
            records = [RawRecord(e.message.key, e.message.value or b"", _headers(e.message.headers),
                                 e.message.partition, e.message.offset) for e in events]
            now_ms = int(time.time() * 1000)
            self.state.maybe_sweep(now_ms)
            await self.state.catch_up({r.partition for r in records})
            try:
                await self._process(records, now_ms)
            except BaseException:
                self.state.forget_pending()
                raise
            self.stats.batches += 1
            self.stats.last_batch_ms = (time.perf_counter() - started) * 1000
            self.stats.busy_ms += self.stats.last_batch_ms
            for record in records:
                self.stats.next_offset[record.partition] = record.offset + 1

    async def _process(self, records: list[RawRecord], now_ms: int) -> None:
        prepared = prepare_batch(records, lambda partition, key: self.state.is_duplicate(partition, key, now_ms))
        oldest = min((r.received_ms for _, r in prepared.kept if r.received_ms), default=now_ms)
        names = await self.enricher.enrich([message for message, _ in prepared.kept],
                                           waited_s=max(0.0, (now_ms - oldest) / 1000))
        out = finish_batch(prepared, names, self.keywords.matcher)
        send = self.producer.send
        pending = []
        for topic, items in ((MESSAGES, out.messages), (EVENTS, out.events), (MODERATION, out.moderation)):
            name = self.topic_names[topic.suffix]
            for key, value in items:
                pending.append(await send(name, value, key=key))
        for raw_key, raw_value, headers in prepared.dead_letters:
            pending.append(await send(self.topic_names[DLQ.suffix], raw_value, key=raw_key, headers=headers))
        await asyncio.gather(*pending)
        # only now that the outputs are durable may the identities be remembered (and faust commit offsets)
        await self.state.remember(self.producer, now_ms)
        self.stats.processed += len(records)
        self.stats.duplicates += prepared.duplicates
        self.stats.dead_letters += len(prepared.dead_letters)
        self.stats.hits += out.hits

    async def _follow_keywords(self) -> None:
        """Keep following every partition of the keywords topic (re-reading it from the start is harmless)."""
        topic = KEYWORDS.name(self.settings)
        lost = False  # said once per outage: the watch on Kafka already warns, and retries come every second
        while not self._stopping:  # a flag as well as faust's cancel, which aiokafka's calls can swallow
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
            try:
                await consumer.start()
                tps = await topic_partitions(consumer, topic)
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                if lost:
                    log.info("keyword follower reads the list again")
                    lost = False
                while not self._stopping:
                    batches = await consumer.getmany(*tps, timeout_ms=500)
                    for records in batches.values():
                        for record in records:
                            self._apply_keyword(record.key, record.value)
                    if await self.keywords.refresh():
                        self.stats.keyword_versions += 1
                        log.info("keyword list updated", extra={"rules": len(self.keywords.rules),
                                                                 "version": self.keywords.version})
            except KafkaError as exc:
                if not lost:
                    log.warning("keyword follower lost Kafka; retrying", extra={"error": str(exc)})
                    lost = True
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()

    def lag(self) -> dict[int, int]:
        """Per assigned raw partition: records behind the consumer's high-water mark."""
        consumer = running_consumer(self.app)
        if consumer is None:
            return {}
        behind = {}
        for tp in consumer.assignment():
            if tp.topic == self.raw.get_topic_name():
                highwater = consumer.highwater(tp) or 0
                behind[tp.partition] = max(0, highwater - self.stats.next_offset.get(tp.partition, 0))
        return behind

    def not_ready_because(self) -> str:
        """Why /readyz says 503, for the operator; "" when ready: Kafka answering, the keyword list read (see
        prepare), and raw partitions held."""
        if not self.kafka.up:
            return self.kafka.reason
        if not self.stats.keywords_loaded:
            return "reading the keyword list"
        if not self.lag():
            return "no raw partitions assigned yet"
        return ""

    async def start(self) -> None:
        """Prepare, then start the producer and faust; safe to call again after a Kafka failure part-way."""
        await self.prepare()
        if not self._producer_started:
            await self.producer.start()
            self._producer_started = True
        self._app_started = True  # faust's stop is needed from here on, even if its start fails part-way
        await self.app.start()
        self.kafka.follow(self.producer.client)

    async def _stop_clients(self) -> None:
        if self._app_started:
            await self.app.stop()
        await self.state.flush()
        await self.producer.stop()  # never started: it still closes, or aiokafka warns of an unclosed producer

    async def start_when_kafka_answers(self, stopping: asyncio.Event) -> bool:
        """start(), once Kafka answers; False if `stopping` was set first (then only stop() is left to do)."""
        return await self.kafka.start_when_up(self.start, stopping)

    async def stop(self) -> None:
        """Stop what was started: faust commits what was acknowledged; the dedupe state waits for its records.
        With Kafka away those would wait for good: then they are cut short (KafkaWatch.cut_short_when_away)."""
        self._stopping = True
        self.stopped_cleanly = await self.kafka.cut_short_when_away(self._stop_clients(), "the worker's stop")
        await self.kafka.close()
        self.state.close()
        await self.enricher.close()
        if self.enricher.client is not None:
            await self.enricher.client.close()


def _headers(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> tuple[tuple[str, bytes], ...]:
    """A record's headers as the edge wrote them (faust types them as a mapping or as pairs)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    return tuple((k, bytes(v)) for k, v in pairs)
