"""The edge's Prometheus metrics. Each edge app has its own registry, so several can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # the *_created series only double every counter on the page

OUTCOMES = ("accepted", "spooled", "rejected_auth", "rejected_input", "unavailable", "aborted", "error")
_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    def __init__(self, edge_id: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"edge": edge_id}
        requests = Counter("wxarchive_edge_requests", "Callback requests by outcome.", ["edge", "outcome"],
                           registry=self.registry)
        self.requests = {o: requests.labels(edge=edge_id, outcome=o) for o in OUTCOMES}
        self.latency = Histogram("wxarchive_edge_request_seconds", "Time from request to answer.", ["edge"],
                                 buckets=_LATENCY, registry=self.registry).labels(**labels)
        self.produce = Histogram("wxarchive_edge_produce_seconds", "Time Kafka took to acknowledge a callback.",
                                 ["edge"], buckets=_LATENCY, registry=self.registry).labels(**labels)
        self.dlq_written = Counter("wxarchive_edge_dlq_records", "Refused bodies kept on the dead-letter topic (or in "
                                   "the spool on their way there).", ["edge"], registry=self.registry).labels(**labels)
        self.spool_errors = Counter("wxarchive_edge_spool_write_errors", "Callbacks the spool could not take (full, "
                                    "or a failed write); each was answered 503.", ["edge"],
                                    registry=self.registry).labels(**labels)
        self.drain_errors = Counter("wxarchive_edge_spool_drain_errors", "Drain passes that failed with an error.",
                                    ["edge"], registry=self.registry).labels(**labels)
        self.spool_corrupt_bytes = Counter("wxarchive_edge_spool_corrupt_bytes", "Unreadable bytes skipped in the "
                                           "spool (every good record around them is kept).", ["edge"],
                                           registry=self.registry).labels(**labels)
        self.spool_dead_letters = Counter("wxarchive_edge_spool_dead_letters", "Spooled records Kafka refused for "
                                          "what they are, moved to the dead-letter topic.", ["edge"],
                                          registry=self.registry).labels(**labels)
        self.spool_records = Gauge("wxarchive_edge_spool_records", "Callbacks in the spool, not yet in Kafka.",
                                   ["edge"], registry=self.registry).labels(**labels)
        self.spool_bytes = Gauge("wxarchive_edge_spool_bytes", "Bytes in the spool.", ["edge"],
                                 registry=self.registry).labels(**labels)
        self.kafka_up = Gauge("wxarchive_edge_kafka_up", "1 when the last Kafka check succeeded.", ["edge"],
                              registry=self.registry).labels(**labels)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
