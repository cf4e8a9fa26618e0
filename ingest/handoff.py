"""Handing accepted callbacks to Kafka, or to the local spool while Kafka cannot take them.

The rules that keep DESIGN invariant 1 without adding duplicates:
- A callback is answered 200 only after Kafka acknowledged it (acks=all, idempotent producer) or, with the
  spool on, after it was fsync'ed to the spool.
- A send that outlives the bound is answered 503 and not spooled: the producer still holds it and delivers
  it when Kafka returns, and E云 re-pushes it; spooling it too would add a second copy here.
- A probe notices an outage on its own, so later callbacks go straight to the spool (or get 503 at once)
  instead of piling into the producer. While the spool holds anything, new callbacks join it behind the
  rest and the spool drains in order: a conversation stays ordered.
- Kafka refusing one record for what it is (too large, corrupt) is not an outage: it never marks Kafka down.
  The caller gets `RecordRefused` and dead-letters the body; a spooled record Kafka refuses is moved to the
  dead-letter topic by the drain, so it never blocks the records behind it. The spool only takes records
  within the size every topic accepts (`wxarchive.topics.max_record_bytes`).
- The drain survives any error: it is logged, counted, and `/readyz` is false until a drain pass succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum
from typing import cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.metrics import EdgeMetrics
from ingest.records import OutRecord, dead_letter
from ingest.spool import Spool, SpoolBatch, SpoolFull
from wxarchive.config import Settings
from wxarchive.errors import WxarchiveError
from wxarchive.kafka_clients import durable_producer, refuses_the_record
from wxarchive.topics import DLQ, RAW, align_topic_config, ensure_topics, max_record_bytes, record_bytes

__all__ = ["Delivery", "KafkaHandoff"]

log = logging.getLogger("wxarchive.edge")

FALLBACK_KEEP_BYTES = 16 * 1024  # what is kept of a body whose dead letter Kafka refused whole
DRAIN_ERROR_LOG_EVERY_S = 60.0


class Delivery(str, Enum):
    ACKED = "acked"
    SPOOLED = "spooled"
    UNAVAILABLE = "unavailable"


class RecordRefused(WxarchiveError):
    """Kafka refused this record for what it is (its size, its bytes); Kafka itself is fine."""

    http_status = 413

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KafkaHandoff:
    def __init__(self, settings: Settings, metrics: EdgeMetrics, spool: Spool | None = None,
                 probe_interval: float = 1.0) -> None:
        self.settings = settings
        self.metrics = metrics
        self.spool = spool
        self.bound = settings.edge_produce_timeout
        self.probe_interval = probe_interval
        self.max_record_bytes = max_record_bytes(settings)
        self.dlq_topic = DLQ.name(settings)
        self.kafka_up = False
        self._producer: AIOKafkaProducer | None = None
        self._spooling = spool is not None  # until Kafka has been seen and the spool is empty
        self._probe: asyncio.Task[None] | None = None
        self._stopping = False
        self._drain_error: str | None = None  # set while the drain keeps failing
        self._drain_error_logged = 0.0
        self._corrupt_counted = 0

    @property
    def ready(self) -> bool:
        return self.kafka_up and self._drain_error is None

    @property
    def not_ready_reason(self) -> str:
        if not self.kafka_up:
            return "Kafka is not reachable"
        return f"the spool cannot be drained: {self._drain_error}" if self._drain_error else ""

    async def start(self) -> None:
        if self.spool is not None:
            waiting = self.spool.open()
            if waiting:
                log.warning("spool holds callbacks from an earlier run; draining them when Kafka answers",
                            extra={"records": waiting})
        self._update_spool_metrics()
        await self._check_kafka()
        if self.kafka_up and self.spool is not None and self.spool.pending == 0:
            self._spooling = False
        self._probe = asyncio.create_task(self._probe_loop())

    async def stop(self) -> None:
        if self._probe is not None:
            # Python 3.11's wait_for can swallow a cancellation that arrives as its inner call completes
            # (gh-86296), so the loop also checks a flag: a cancel alone once kept it probing forever
            self._stopping = True
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), self.bound)
            except (TimeoutError, KafkaError):
                log.warning("Kafka did not take the last records before shutdown; E云 re-pushes what got no 200")
        if self.spool is not None:
            await self.spool.close()

    # -- delivering ------------------------------------------------------------------------------------

    async def deliver(self, record: OutRecord) -> Delivery:
        """Kafka's acknowledgement, the spool's fsync, or UNAVAILABLE (answer 503). Raises RecordRefused when
        Kafka refuses the record itself; Kafka is not marked down for that."""
        if record_bytes(record.key, record.value, record.headers) > self.max_record_bytes:
            raise RecordRefused(f"record of {len(record.value)} bytes is over the {self.max_record_bytes}-byte "
                                "record limit")
        if self._spooling or not self.kafka_up or self._producer is None:
            return await self._to_spool(record)
        started = time.perf_counter()
        try:
            await self._send_now(record)
        except KafkaError as exc:
            if refuses_the_record(exc):
                raise RecordRefused(_describe(exc)) from exc
            self._mark_down(_describe(exc))
            return Delivery.UNAVAILABLE
        except TimeoutError:
            self._mark_down(f"no acknowledgement within {self.bound:g}s")
            return Delivery.UNAVAILABLE
        self.metrics.produce.observe(time.perf_counter() - started)
        return Delivery.ACKED

    async def keep_refused(self, record: OutRecord) -> Delivery:
        """Deliver a dead letter; if Kafka refuses even that whole, keep its first bytes (with the full length
        and hash in its headers) rather than nothing."""
        try:
            return await self.deliver(record)
        except RecordRefused as exc:
            log.warning("a dead letter was refused whole; keeping its first bytes", extra={"reason": exc.reason})
            return await self.deliver(_cut(record, exc.reason))

    async def _send_now(self, record: OutRecord) -> None:
        assert self._producer is not None
        await asyncio.wait_for(
            self._producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers)),
            self.bound)

    async def _to_spool(self, record: OutRecord) -> Delivery:
        if self.spool is None:
            return Delivery.UNAVAILABLE
        try:
            await self.spool.append(record)
        except (SpoolFull, OSError) as exc:
            log.error("spool cannot take the callback", extra={"error": str(exc)})
            self.metrics.spool_errors.inc()
            return Delivery.UNAVAILABLE
        self._update_spool_metrics()
        return Delivery.SPOOLED

    def _mark_down(self, reason: str) -> None:
        if self.kafka_up:
            log.warning("Kafka stopped answering", extra={"reason": reason, "spool": self.spool is not None})
        self.kafka_up = False
        self.metrics.kafka_up.set(0)
        if self.spool is not None:
            self._spooling = True

    # -- watching Kafka and draining the spool -----------------------------------------------------------

    async def _probe_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.probe_interval)
            try:
                await self._check_kafka()
                if self.kafka_up and self._spooling and self.spool is not None:
                    await self._drain()
                self._drain_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # anything: the loop must live on, or nothing drains again
                self._drain_failed(exc)

    def _drain_failed(self, exc: Exception) -> None:
        self._drain_error = _describe(exc)
        self.metrics.drain_errors.inc()
        now = time.monotonic()
        if now - self._drain_error_logged >= DRAIN_ERROR_LOG_EVERY_S:
            self._drain_error_logged = now
            log.error("the spool drain failed; retrying", exc_info=exc,
                      extra={"error": self._drain_error, "spooled": self.spool.pending if self.spool else 0})

    async def _check_kafka(self) -> None:
        try:
            if self._producer is None:
                await asyncio.wait_for(self._prepare_topics(), self.bound)
                producer = durable_producer(self.settings.kafka_bootstrap, request_timeout_ms=int(self.bound * 1000),
                                            max_request_size=self.max_record_bytes)
                await asyncio.wait_for(producer.start(), self.bound)
                self._producer = producer
            else:
                await asyncio.wait_for(self._producer.client.fetch_all_metadata(), self.bound)
        except (TimeoutError, KafkaError, OSError) as exc:
            self._mark_down(str(exc) or type(exc).__name__)
            return
        if not self.kafka_up:
            log.info("Kafka answers", extra={"bootstrap": self.settings.kafka_bootstrap})
        self.kafka_up = True
        self.metrics.kafka_up.set(1)
        if self.spool is None:
            self._spooling = False

    async def _prepare_topics(self) -> None:
        """Create the topics, and size existing ones for the body limit (it may have changed since)."""
        await ensure_topics(self.settings, RAW, DLQ)
        for topic in (RAW, DLQ):
            if await align_topic_config(self.settings, topic):
                log.info("topic configuration updated", extra={"topic": topic.name(self.settings)})

    async def _drain(self) -> None:
        """Send the spool to Kafka in order; hand new callbacks back to Kafka directly once it is empty."""
        assert self.spool is not None
        while True:
            batch = await self.spool.read_batch()
            self._update_spool_metrics()
            if not batch.records:
                if batch.skipped_bytes:
                    await self.spool.commit(batch.end, 0)
                    continue
                if self.spool.pending == 0:
                    self._spooling = False  # no await since the check: nothing can slip in between
                    log.info("spool drained; callbacks go straight to Kafka again")
                    return
                await asyncio.sleep(0.01)  # appends still being written
                continue
            settled = await self._send_batch(batch)
            if settled:
                await self.spool.commit(batch.ends[settled - 1], settled)
                self._update_spool_metrics()
            if settled < len(batch.records):
                return  # Kafka went away: _send_batch marked it down; the probe retries

    async def _send_batch(self, batch: SpoolBatch) -> int:
        """Send a batch; returns how many of its first records are settled: acknowledged, or (refused by Kafka
        for what they are) moved to the dead-letter topic."""
        assert self._producer is not None
        outcomes: list[BaseException | None] = []
        try:
            pending: list[asyncio.Future[object] | BaseException] = []
            for r in batch.records:
                try:
                    pending.append(await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers)))
                except KafkaError as exc:  # raised at once for a record over the request size
                    if not refuses_the_record(exc):
                        raise
                    pending.append(exc)
            outcomes = await asyncio.wait_for(asyncio.gather(*(_outcome(p) for p in pending)), self.bound * 2)
        except (TimeoutError, KafkaError) as exc:
            self._mark_down(f"while draining the spool: {_describe(exc)}")
            return 0
        settled = 0
        for record, outcome in zip(batch.records, outcomes):
            if outcome is not None:
                if not refuses_the_record(outcome):
                    self._mark_down(f"while draining the spool: {_describe(outcome)}")
                    break
                await self._dead_letter_spooled(record, _describe(outcome))
            settled += 1
        return settled

    async def _dead_letter_spooled(self, record: OutRecord, reason: str) -> None:
        """A spooled record Kafka will never take: move it to the dead-letter topic so the rest can drain."""
        letter = dead_letter(self.dlq_topic, record.key, record.value, record.headers,
                             f"Kafka refused the record: {reason}", 413, self.settings.edge_max_body_bytes)
        try:
            await self._send_now(letter)
        except KafkaError as exc:
            if not refuses_the_record(exc):
                raise
            await self._send_now(_cut(letter, _describe(exc)))
        self.metrics.spool_dead_letters.inc()
        log.error("a spooled record was refused by Kafka and moved to the dead-letter topic",
                  extra={"topic": record.topic, "bytes": len(record.value), "reason": reason})

    def _update_spool_metrics(self) -> None:
        if self.spool is not None:
            self.metrics.spool_records.set(self.spool.pending)
            self.metrics.spool_bytes.set(self.spool.size_bytes)
            corrupt = self.spool.corrupt_bytes_total - self._corrupt_counted  # each damaged byte counted once
            if corrupt > 0:
                self._corrupt_counted += corrupt
                self.metrics.spool_corrupt_bytes.inc(corrupt)
                log.error("the spool held unreadable bytes; skipped them and kept every good record around them",
                          extra={"bytes": corrupt})


async def _outcome(pending: asyncio.Future[object] | BaseException) -> BaseException | None:
    if isinstance(pending, BaseException):
        return pending
    try:
        await pending
    except KafkaError as exc:
        return cast(BaseException, exc)  # aiokafka ships no types: to mypy its errors are Any
    return None


def _cut(record: OutRecord, reason: str) -> OutRecord:
    return dead_letter(record.topic, record.key, record.value, record.headers,
                       f"{(record.header('wx-reason') or b'').decode(errors='replace')}; kept in part: {reason}",
                       int(record.header("wx-status") or b"413"), FALLBACK_KEEP_BYTES)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
