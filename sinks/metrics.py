"""The sink's Prometheus metrics (read at scrape time) and readiness, on WXARCHIVE_SINK_PORT."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from door.server import Door, DoorCollector
from wxarchive.ops_server import serve_ops

if TYPE_CHECKING:
    from sinks.sink import Sink


class SinkCollector(Collector):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.sink.stats
        rows = CounterMetricFamily("wxarchive_sink_rows", "Rows inserted, per table.", labels=["table"])
        for table, n in sorted(s.rows.items()):
            rows.add_metric([table], n)
        yield rows
        yield CounterMetricFamily("wxarchive_sink_inserts", "Blocks inserted.", value=s.inserts)
        yield CounterMetricFamily("wxarchive_sink_insert_seconds", "Time spent in successful inserts.",
                                  value=s.insert_seconds)
        yield CounterMetricFamily("wxarchive_sink_insert_errors", "Failed insert attempts (each is retried).",
                                  value=s.insert_errors)
        yield CounterMetricFamily("wxarchive_sink_dead_letters", "Records set aside to the dead-letter topic.",
                                  value=s.dead_letters)
        yield CounterMetricFamily("wxarchive_sink_commits", "Offset commits after successful inserts.", value=s.commits)
        yield GaugeMetricFamily("wxarchive_sink_last_flush_seconds", "Time the last flush (inserts) took.",
                                value=s.last_flush_s)
        yield GaugeMetricFamily("wxarchive_sink_kafka_up", "1 while Kafka answers the sink's checks.",
                                value=int(self.sink.kafka.up))
        yield GaugeMetricFamily("wxarchive_sink_unflushed_rows", "Rows read but not yet inserted and committed.",
                                value=self.sink.unflushed)
        lag = GaugeMetricFamily("wxarchive_sink_lag", "Records not yet committed, per topic partition.",
                                labels=["partition"])
        for where, behind in sorted(self.sink.lag().items()):
            lag.add_metric([where], behind)
        yield lag


async def serve_sink_ops(sink: Sink, host: str, port: int, door: Door | None = None) -> tuple[web.AppRunner, str]:
    """The sink's port also carries the door's metrics (the door lives in the sink's process)."""
    collectors: list[Collector] = [SinkCollector(sink)] + ([DoorCollector(door)] if door is not None else [])
    return await serve_ops(collectors, lambda: (sink.not_ready_because(), {"lag": sink.lag()}), host, port)
