"""The edge as a service: uvicorn serving the edge app (and its ops port, when it has one) in this event loop.

`serve(settings)` holds a running edge for whoever composes it (tests, a future in-process stack); `run` is
`wxarchive edge`, one process: uvicorn gives graceful shutdown, so on SIGTERM or Ctrl-C it stops accepting,
lets requests in flight finish (up to a bound), then runs the app's shutdown, which stops the producer after
its last acknowledgements. Scale out with more edge processes behind a load balancer; each has its own
spool directory.
"""

from __future__ import annotations

import asyncio

from ingest.app import EdgeApp
from ingest.protocol import raise_open_file_limit
from ingest.server import EdgeServer, build_app
from wxarchive.config import Settings
from wxarchive.lifecycle import Service, wait_started
from wxarchive.net import require_free_port

__all__ = ["EdgeService", "run", "serve"]

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class EdgeService(Service):
    """A running edge: `app` (its handoff, metrics), listening once started; stop() shuts it down gracefully."""

    def __init__(self, settings: Settings, insecure: bool = False, probe_interval: float = 1.0) -> None:
        self.app = build_app(settings, insecure=insecure, probe_interval=probe_interval)
        self._server = EdgeServer(self.app, settings)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="edge")
        await wait_started(lambda: self._server.started, self._task, "edge", START_TIMEOUT_S)
        self.ops_url = self._server.ops_url

    async def stop(self) -> None:
        self._server.should_exit = True
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)  # a shutdown that hangs fails here


def serve(settings: Settings, insecure: bool = False, probe_interval: float = 1.0) -> EdgeService:
    """The edge, to be held with `async with`."""
    return EdgeService(settings, insecure, probe_interval)


def run(app: EdgeApp, settings: Settings) -> None:
    """`wxarchive edge`: serve until SIGINT or SIGTERM (uvicorn's own signal handling), on free ports only."""
    raise_open_file_limit()
    require_free_port(settings.edge_host, settings.edge_port, "choose another with --port or WXARCHIVE_EDGE_PORT")
    if settings.edge_ops_port:
        require_free_port(settings.edge_ops_host, settings.edge_ops_port, "choose another with WXARCHIVE_EDGE_OPS_PORT")
    EdgeServer(app, settings).run()
