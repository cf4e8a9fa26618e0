"""The edge app answering without Kafka ("bare"), for the benchmarks that measure the edge's own cost.

The project's modules are imported when called, not at import, so that a benchmark can first put another
checkout first on sys.path and measure that checkout's edge."""

from __future__ import annotations

from typing import Any


def acknowledge_at_once(app: Any, settings: Any) -> None:
    """Replace the app's Kafka hand-off by one that acknowledges every record at once."""
    from ingest.handoff import Delivery, KafkaHandoff
    from ingest.records import OutRecord

    class AckAtOnce(KafkaHandoff):
        async def start(self) -> None:
            self.kafka_up = True

        async def stop(self) -> None:
            pass

        async def deliver(self, record: OutRecord) -> Delivery:
            return Delivery.ACKED

    app.handoff = AckAtOnce(settings, app.metrics)
