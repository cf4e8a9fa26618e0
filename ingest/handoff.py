"""Handing accepted callbacks to Kafka, or to the local spool while Kafka cannot take them.

The rules that keep DESIGN invariant 1 without adding duplicates:
- A callback is answered 200 only after Kafka acknowledged it (acks=all, idempotent producer) or, with the
  spool on, after it was fsync'ed to the spool.
- A send that outlives the bound is answered 503 and not spooled: the producer still holds it and delivers
  it when Kafka returns, and E云 re-pushes it; spooling it too would add a second copy here.
- A probe notices an outage on its own, so later callbacks go straight to the spool (or get 503 at once)
  instead of piling into the producer. While the spool holds anything, new callbacks join it behind the
  rest and the spool drains in order: a conversation stays ordered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.metrics import EdgeMetrics
from ingest.records import OutRecord
from ingest.spool import Spool, SpoolFull
from wxarchive.config import Settings
from wxarchive.kafka_clients import durable_producer
from wxarchive.topics import DLQ, RAW, ensure_topics

log = logging.getLogger("wxarchive.edge")


class Delivery(str, Enum):
    ACKED = "acked"
    SPOOLED = "spooled"
    UNAVAILABLE = "unavailable"


class KafkaHandoff:
    def __init__(self, settings: Settings, metrics: EdgeMetrics, spool: Spool | None = None,
                 probe_interval: float = 1.0) -> None:
        self.settings = settings
        self.metrics = metrics
        self.spool = spool
        self.bound = settings.edge_produce_timeout
        self.probe_interval = probe_interval
        self.kafka_up = False
        self._producer: AIOKafkaProducer | None = None
        self._spooling = spool is not None  # until Kafka has been seen and the spool is empty
        self._probe: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def ready(self) -> bool:
        return self.kafka_up

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
            except (asyncio.TimeoutError, KafkaError):
                log.warning("Kafka did not take the last records before shutdown; E云 re-pushes what got no 200")
        if self.spool is not None:
            await self.spool.close()

    # -- delivering ------------------------------------------------------------------------------------

    async def deliver(self, record: OutRecord) -> Delivery:
        if self._spooling or not self.kafka_up or self._producer is None:
            return await self._to_spool(record)
        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers)),
                self.bound)
        except (asyncio.TimeoutError, KafkaError) as exc:
            self._mark_down(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return Delivery.UNAVAILABLE
        self.metrics.produce.observe(time.perf_counter() - started)
        return Delivery.ACKED

    async def _to_spool(self, record: OutRecord) -> Delivery:
        if self.spool is None:
            return Delivery.UNAVAILABLE
        try:
            await self.spool.append(record)
        except (SpoolFull, OSError) as exc:
            log.error("spool cannot take the callback", extra={"error": str(exc)})
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
            await self._check_kafka()
            if self.kafka_up and self._spooling and self.spool is not None:
                await self._drain()

    async def _check_kafka(self) -> None:
        try:
            if self._producer is None:
                await asyncio.wait_for(ensure_topics(self.settings, RAW, DLQ), self.bound)
                producer = durable_producer(self.settings.kafka_bootstrap, request_timeout_ms=int(self.bound * 1000))
                await asyncio.wait_for(producer.start(), self.bound)
                self._producer = producer
            else:
                await asyncio.wait_for(self._producer.client.fetch_all_metadata(), self.bound)
        except (asyncio.TimeoutError, KafkaError, OSError) as exc:
            self._mark_down(str(exc) or type(exc).__name__)
            return
        if not self.kafka_up:
            log.info("Kafka answers", extra={"bootstrap": self.settings.kafka_bootstrap})
        self.kafka_up = True
        self.metrics.kafka_up.set(1)
        if self.spool is None:
            self._spooling = False

    async def _drain(self) -> None:
        """Send the spool to Kafka in order; hand new callbacks back to Kafka directly once it is empty."""
        assert self.spool is not None and self._producer is not None
        while True:
            records, end = await self.spool.read_batch()
            if not records:
                if self.spool.pending == 0:
                    self._spooling = False  # no await since the check: nothing can slip in between
                    log.info("spool drained; callbacks go straight to Kafka again")
                    return
                await asyncio.sleep(0.01)  # appends still being written
                continue
            try:
                futures = [await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                           for r in records]
                await asyncio.wait_for(asyncio.gather(*futures), self.bound * 2)
            except (asyncio.TimeoutError, KafkaError) as exc:
                self._mark_down(f"while draining the spool: {exc or type(exc).__name__}")
                return
            await self.spool.commit(end, len(records))
            self._update_spool_metrics()

    def _update_spool_metrics(self) -> None:
        if self.spool is not None:
            self.metrics.spool_records.set(self.spool.pending)
            self.metrics.spool_bytes.set(self.spool.size_bytes)
