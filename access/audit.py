"""The audit trail: one record per content request on PREFIX.audit, acknowledged before the answer leaves.

`AuditLog.record` returns only after every in-sync replica has the record (acks=all, idempotent producer), and
otherwise raises AuditUnavailable within `timeout` seconds; the API answers that with 503 and nothing of the
result (fail closed). A record whose wait ran out may still reach Kafka later: then a refused request is on
record, never an answered one off it.

The producer lives as long as the AuditLog (a producer per request would cost a connection and a metadata round
trip each). Kafka away at start is no error: the producer is (re)made on the next record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter

from schemas.access import AuditRecord
from wxarchive.config import Settings
from wxarchive.errors import AuditUnavailable, BrokerError
from wxarchive.kafka_clients import durable_producer, refuses_the_record
from wxarchive.topics import AUDIT, ensure_topics

__all__ = ["AuditLog", "AuditMetrics", "AuditRecorder"]

log = logging.getLogger("wxarchive.audit")


class AuditRecorder(Protocol):
    """Whatever records an audit entry and returns once it is kept: AuditLog itself, or an API request's gate
    (which keeps a request to its one record)."""

    async def record(self, entry: AuditRecord) -> None: ...


class AuditMetrics:
    """Counters of the audit trail, in the registry given (the API's), or one of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.written = Counter("wxarchive_audit_records", "Audit records Kafka acknowledged.", registry=self.registry)
        self.failures = Counter("wxarchive_audit_failures", "Audit records that could not be written; each request "
                                "was refused (503).", registry=self.registry)


class AuditLog:
    """The audit topic's writer for one process: `start()` at startup, `record()` per request, `close()` at exit."""

    def __init__(self, settings: Settings, *, timeout: float = 5.0, metrics: AuditMetrics | None = None) -> None:
        self.settings = settings
        self.topic = AUDIT.name(settings)
        self.timeout = timeout
        self.metrics = metrics or AuditMetrics()
        self._producer: AIOKafkaProducer | None = None
        self._connecting = asyncio.Lock()

    async def start(self) -> None:
        """Connect now, so the first request does not wait for it; Kafka away is left to the first record."""
        try:
            await asyncio.wait_for(self._connected(), self.timeout)
        except (TimeoutError, KafkaError, OSError, BrokerError) as exc:
            log.warning("audit log not connected yet", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def record(self, entry: AuditRecord) -> None:
        """Write one audit record and return once Kafka acknowledged it; AuditUnavailable when it cannot be done
        within `timeout` seconds."""
        key = (entry.token_id or entry.principal).encode()  # one caller's records stay in order on one partition
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._connected()
                sent = await producer.send(self.topic, entry.to_json(), key=key)
                await asyncio.shield(sent)  # a wait that runs out leaves the record's own future alone
        except (TimeoutError, KafkaError, OSError, BrokerError) as exc:
            self.metrics.failures.inc()
            if not isinstance(exc, TimeoutError) and not refuses_the_record(exc):
                await self._drop_producer()  # a producer that failed may be stuck; make a new one next time
            raise AuditUnavailable(f"the audit record of {entry.action!r} was not acknowledged by Kafka at "
                                   f"{self.settings.kafka_bootstrap} within {self.timeout:g}s "
                                   f"({type(exc).__name__}: {str(exc) or 'timed out'}); the request was refused"
                                   ) from exc
        self.metrics.written.inc()

    async def close(self) -> None:
        await self._drop_producer()

    async def _connected(self) -> AIOKafkaProducer:
        async with self._connecting:
            if self._producer is None:
                await ensure_topics(self.settings, AUDIT)
                producer = durable_producer(self.settings.kafka_bootstrap, request_timeout_ms=int(self.timeout * 1000),
                                            linger_ms=0)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
