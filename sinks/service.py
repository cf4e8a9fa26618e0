"""The sink as a service: its health and metrics port, the sink once Kafka answers, and a stop in reverse order.

`serve(settings)` is how every runner holds the sink: `wxarchive sink` (its own process, until a signal) and
`wxarchive up` (in its process, because in embedded mode the process that writes the chdb directory is the one
that reads it: DESIGN invariant 5). Entering serves the health port at once (while Kafka is away /healthz
answers and /readyz says why not ready) and starts the sink in the background as soon as Kafka answers;
leaving stops it (a clean stop flushes and commits what it holds), then the port, then the clients. Leaving
twice, or after a failure part-way, is safe.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from door.server import Door
from sinks.metrics import serve_sink_ops
from sinks.schema import DATABASE
from sinks.sink import Sink
from wxarchive.clickhouse import parse_dsn
from wxarchive.config import Settings
from wxarchive.engine_share import EngineShare
from wxarchive.lifecycle import Service, settle

__all__ = ["SinkService", "run", "serve"]

log = logging.getLogger("wxarchive.sink")


class SinkService(Service):
    """A running sink: `sink` (its counters, `clickhouse`), `door` (embedded mode), `ops_url`, `started()` and
    `finished`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        share = EngineShare()
        self.sink = Sink(settings, share=share)
        # the door opens with the port, before Kafka answers: the archive is readable while Kafka is away
        embedded = parse_dsn(settings.clickhouse_dsn).embedded
        self.door = Door(settings, share) if embedded and settings.door_port else None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        self._ops, self.ops_url = await serve_sink_ops(self.sink, s.sink_host, s.sink_port, self.door)
        self._task = asyncio.create_task(self._run(), name="sink")
        if self.door is not None:
            await self._open_door(self.door)

    async def _open_door(self, door: Door) -> None:
        """The door is for readers: one that cannot open (its port taken) is logged and the sink writes on, since
        stopping the write path for want of a read path would lose more than it saves. `up` checks the port
        before it starts anything, so there it is an error at once."""
        try:
            await door.start()
        except OSError as exc:
            self.door = None
            await door.stop()
            log.error("the door is not served: its address is taken; set WXARCHIVE_DOOR_PORT to a free port "
                      "(0: no door)", extra={"address": f"{self.settings.door_host}:{self.settings.door_port}",
                                             "error": str(exc)})

    async def _run(self) -> None:
        if await self.sink.start_when_kafka_answers():
            self._started.set()
            await self.sink.run()

    async def started(self) -> bool:
        """Wait until the sink consumes (Kafka answered, ClickHouse migrated): True; False if it was stopped
        first; the sink's own error if it failed."""
        assert self._task is not None
        waiter = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._started.is_set():
            return True
        waiter.cancel()
        self._task.result()
        return False

    @property
    def finished(self) -> asyncio.Task[None]:
        """The sink's run: done when it stopped, by stop() or on its own."""
        assert self._task is not None
        return self._task

    async def stop(self) -> None:
        self.sink.stop()
        task, self._task = self._task, None
        await settle(task)
        if self.door is not None:
            await self.door.stop()
        await self.close_ops()
        await self.sink.close()


def serve(settings: Settings) -> SinkService:
    """The sink, to be held with `async with`."""
    return SinkService(settings)


def run(settings: Settings) -> None:
    """`wxarchive sink`: run until SIGINT or SIGTERM; then flush and commit what is buffered, and stop."""

    async def main() -> None:
        async with serve(settings) as service:
            sink = service.sink
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, sink.stop)
            if service.door is not None:
                print(f"door (read-only ClickHouse HTTP) on {service.door.url}", flush=True)
            if await service.started():
                print(f"sink writing {', '.join(sink.feeds)} into {DATABASE} at {sink.clickhouse_display}; "
                      f"health and metrics on {service.ops_url}", flush=True)
            await service.finished
        rows = ", ".join(f"{n} {t}" for t, n in sorted(sink.stats.rows.items())) or "no rows"
        print(f"sink stopped: {rows}; {sink.stats.dead_letters} dead letters", flush=True)

    asyncio.run(main())
