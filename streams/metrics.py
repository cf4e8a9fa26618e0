"""The worker's health and Prometheus metrics, served on their own small HTTP port.

Metrics are read from the worker's counters when Prometheus scrapes (a custom collector), so processing
pays nothing for them. Lag per raw partition is the consumer's high-water mark minus the next offset the
worker will process; /readyz answers 200 while Kafka answers, the worker holds partitions and has read the
keyword list, and 503 with the reason otherwise. The E云 breaker's gauge and outage counter are what
`wxarchive up` reads to flag a worker archiving every message without names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eyun.breaker import BreakerState
from wxarchive.ops_server import serve_ops

if TYPE_CHECKING:
    from streams.worker import Worker

__all__ = ["serve_worker_ops"]


class WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        w = self.worker
        s, e = w.stats, w.enricher.stats
        records = CounterMetricFamily("wxarchive_worker_records", "Raw records by what became of them.", labels=["result"])
        records.add_metric(["archived"], s.processed - s.duplicates - s.dead_letters)
        records.add_metric(["duplicate"], s.duplicates)
        records.add_metric(["dead_letter"], s.dead_letters)
        yield records
        yield CounterMetricFamily("wxarchive_worker_batches", "Micro-batches processed.", value=s.batches)
        yield GaugeMetricFamily("wxarchive_worker_last_batch_seconds", "Time the last batch took.", value=s.last_batch_ms / 1000)
        yield CounterMetricFamily("wxarchive_worker_busy_seconds", "Time spent processing batches (vs waiting for them).",
                                  value=s.busy_ms / 1000)
        yield CounterMetricFamily("wxarchive_worker_moderation_hits", "Sensitive-word hits emitted.", value=s.hits)
        yield CounterMetricFamily("wxarchive_worker_dedupe_expired", "Identities swept out after the horizon.",
                                  value=w.state.expired)
        yield CounterMetricFamily("wxarchive_worker_dedupe_restored", "Identities read back from the dedupe changelog.",
                                  value=w.state.restored)
        yield GaugeMetricFamily("wxarchive_worker_dedupe_identities", "Identities tracked (RocksDB: its estimate).",
                                value=len(w.state))
        yield GaugeMetricFamily("wxarchive_worker_keyword_rules", "Rules in the live keyword list.", value=len(w.keywords.rules))
        yield GaugeMetricFamily("wxarchive_worker_keyword_version", "Keyword lists compiled since start.", value=w.keywords.version)
        cache = CounterMetricFamily("wxarchive_worker_contact_cache", "Contact lookups by the cache's answer.", labels=["result"])
        cache.add_metric(["hit"], e.cache_hits)
        cache.add_metric(["miss"], e.cache_misses)
        yield cache
        yield CounterMetricFamily("wxarchive_worker_eyun_errors", "Failed E云 lookups.", value=e.api_errors)
        yield CounterMetricFamily("wxarchive_worker_enrich_timeouts", "Batches that went on before their lookups.",
                                  value=e.timeouts)
        yield CounterMetricFamily("wxarchive_worker_not_enriched", "Messages archived without names.", value=e.not_enriched)
        client = w.enricher.client
        # open until a call succeeds again: half-open (a trial allowed, none made yet) is still the same outage
        yield GaugeMetricFamily("wxarchive_worker_eyun_breaker_open",
                                "1 from the E云 circuit breaker's opening until a call succeeds again.",
                                value=1 if client is not None and client.breaker_state is not BreakerState.CLOSED else 0)
        yield CounterMetricFamily("wxarchive_worker_eyun_breaker_opened",
                                  "E云 outages: openings of the circuit breaker after calls had succeeded.",
                                  value=client.breaker.openings if client is not None else 0)
        yield GaugeMetricFamily("wxarchive_worker_kafka_up", "1 while Kafka answers the worker's checks.",
                                value=int(w.kafka.up))
        lag = GaugeMetricFamily("wxarchive_worker_lag", "Raw records not yet processed, per partition.", labels=["partition"])
        for partition, behind in w.lag().items():
            lag.add_metric([str(partition)], behind)
        yield lag


async def serve_worker_ops(worker: Worker, host: str, port: int) -> tuple[web.AppRunner, str]:
    return await serve_ops(WorkerCollector(worker),
                           lambda: (worker.not_ready_because(), {"partitions": sorted(worker.lag())}), host, port)
