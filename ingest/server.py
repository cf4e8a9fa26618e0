"""Running the edge: the app wired from settings, served by uvicorn (httptools, uvloop) on one process.

uvicorn gives graceful shutdown: on SIGTERM or Ctrl-C it stops accepting, lets requests in flight finish
(up to a bound), then runs the app's shutdown, which stops the producer after its last acknowledgements.
Scale out with more edge processes behind a load balancer; each has its own spool directory.
"""

from __future__ import annotations

import uvicorn

from ingest.app import EdgeApp
from ingest.auth import Authenticator
from ingest.handoff import KafkaHandoff
from ingest.metrics import EdgeMetrics
from ingest.spool import Spool
from wxarchive.config import Settings
from wxarchive.net import require_free_port
from wxarchive.topics import DLQ, RAW


def build_app(settings: Settings, insecure: bool = False, probe_interval: float = 1.0) -> EdgeApp:
    metrics = EdgeMetrics(settings.edge_id)
    spool = None
    if settings.edge_spool:
        spool = Spool(settings.data_dir.resolve() / "edge-spool" / settings.edge_id,
                      max_bytes=settings.edge_spool_max_mb * 1024 * 1024)
    handoff = KafkaHandoff(settings, metrics, spool, probe_interval=probe_interval)
    return EdgeApp(handoff, Authenticator.from_settings(settings, insecure=insecure), metrics, settings.edge_id,
                   settings.edge_max_body_bytes, RAW.name(settings), DLQ.name(settings))


def server_config(app: EdgeApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(app, host=settings.edge_host, port=settings.edge_port, loop="uvloop", http="httptools",
                          lifespan="on", access_log=False, log_level="warning", timeout_graceful_shutdown=10,
                          server_header=False, date_header=False)


def serve(app: EdgeApp, settings: Settings) -> None:
    require_free_port(settings.edge_host, settings.edge_port, "choose another with --port or WXARCHIVE_EDGE_PORT")
    uvicorn.Server(server_config(app, settings)).run()
