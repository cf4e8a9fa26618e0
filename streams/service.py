"""The worker as a service: its health and metrics port, the worker once Kafka answers, a stop in reverse order.

`serve(settings)` is how a runner holds the worker; `run(settings)` is `wxarchive worker`, one process until
SIGINT or SIGTERM (`up` runs that command as a child process: faust wants its own loop and a core's worth of
work). Entering serves the health port first (while Kafka is away /healthz answers and /readyz says why not
ready) and starts the worker in the background once Kafka answers; leaving stops faust cleanly (it commits
what was acknowledged), then the port. While Kafka is away, faust gets a grace and the process then leaves
without its final commit (at-least-once: the next start repeats those records and their duplicates are
dropped).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from streams.metrics import serve_worker_ops
from streams.worker import Worker
from wxarchive.config import Settings
from wxarchive.lifecycle import Service, settle
from wxarchive.topics import RAW

__all__ = ["WorkerService", "run", "serve"]


class WorkerService(Service):
    """A running worker: `worker` (its counters), `ops_url`, `started()`, `request_stop()` and `stopping`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker = Worker(settings)
        self.stopping = asyncio.Event()
        self._starting: asyncio.Task[bool] | None = None

    async def start(self) -> None:
        s = self.settings
        self._ops, self.ops_url = await serve_worker_ops(self.worker, s.worker_host, s.worker_port)
        self._starting = asyncio.create_task(self.worker.start_when_kafka_answers(self.stopping), name="worker-start")

    async def started(self) -> bool:
        """True once the worker runs; False if a stop was requested first; the worker's error if it failed."""
        assert self._starting is not None
        return await asyncio.shield(self._starting)

    def request_stop(self) -> None:
        """From a signal handler: only sets a flag; the runner then leaves `serve`."""
        self.stopping.set()

    async def stop(self) -> None:
        self.stopping.set()
        starting, self._starting = self._starting, None
        await settle(starting)
        await self.close_ops()
        await self.worker.stop()


def serve(settings: Settings) -> WorkerService:
    """The worker, to be held with `async with`."""
    return WorkerService(settings)


def run(settings: Settings) -> None:
    """`wxarchive worker`: run until SIGINT or SIGTERM."""

    async def main() -> None:
        finished = False
        service: WorkerService | None = None
        try:
            async with serve(settings) as service:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, service.request_stop)
                if await service.started():
                    print(f"worker archiving {RAW.name(settings)} from Kafka {settings.kafka_bootstrap}; "
                          f"health and metrics on {service.ops_url}", flush=True)
                    await service.stopping.wait()
                finished = True
        finally:
            if service is not None:
                s = service.worker.stats
                print(f"worker stopped: {s.processed} records, {s.duplicates} duplicates, {s.dead_letters} dead "
                      f"letters, {s.hits} moderation hits", flush=True)
                if not service.worker.stopped_cleanly:
                    # faust's consumer thread and tasks still wait for the broker, and asyncio.run and the
                    # interpreter would wait for them in turn: leave now (the dedupe state is closed; offsets
                    # are Kafka's)
                    logging.shutdown()
                    os._exit(0 if finished else 1)

    asyncio.run(main())
