"""The edge's server: the app wired from settings, served by uvicorn (httptools, uvloop) on one process
(ingest/service.py runs it).

Everything a stranger controls is bounded by the protocol (ingest/protocol.py) before the app sees a request.
X-Forwarded-For is believed only from WXARCHIVE_EDGE_TRUSTED_PROXIES (none by default: uvicorn's own default
trusts loopback, which let a local client pass the allow-list with a made-up address). With
WXARCHIVE_EDGE_OPS_PORT set, /healthz, /readyz and /metrics move to their own address (ingest/ops.py).
"""

from __future__ import annotations

import socket
import weakref

import uvicorn
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from ingest.app import EdgeApp
from ingest.auth import Authenticator, parse_allow_list
from ingest.handoff import KafkaHandoff
from ingest.metrics import EdgeMetrics
from ingest.ops import CallbackOnly, serve_edge_ops
from ingest.protocol import ConnectionGuard, EdgeLimits
from ingest.spool import Spool
from wxarchive.config import Settings
from wxarchive.topics import DLQ, RAW

__all__ = ["build_app", "server_config"]


def build_app(settings: Settings, insecure: bool = False, probe_interval: float = 1.0) -> EdgeApp:
    metrics = EdgeMetrics(settings.edge_id)
    spool = None
    if settings.edge_spool:
        spool = Spool(settings.data_dir.resolve() / "edge-spool" / settings.edge_id,
                      max_bytes=settings.edge_spool_max_mb * 1024 * 1024)
    handoff = KafkaHandoff(settings, metrics, spool, probe_interval=probe_interval)
    return EdgeApp(handoff, Authenticator.from_settings(settings, insecure=insecure), metrics, settings.edge_id,
                   settings.edge_max_body_bytes, RAW.name(settings), DLQ.name(settings))


_server_collectors: weakref.WeakKeyDictionary[CollectorRegistry, Collector] = weakref.WeakKeyDictionary()


def server_config(app: EdgeApp, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for the edge: its guarded protocol, proxies trusted only when configured, the
    callback port narrowed to /callback when operations have their own port. The server's refusal counters join
    the app's metrics (once per app: a second config replaces the first's)."""
    guard = ConnectionGuard(EdgeLimits.from_settings(settings))
    registry = app.metrics.registry
    if registry in _server_collectors:
        registry.unregister(_server_collectors[registry])
    _server_collectors[registry] = guard.collector(settings.edge_id)
    registry.register(_server_collectors[registry])
    proxies = [str(net) for net in parse_allow_list(settings.edge_trusted_proxies, "edge_trusted_proxies")]
    return uvicorn.Config(CallbackOnly(app) if settings.edge_ops_port else app, host=settings.edge_host,
                          port=settings.edge_port, loop="uvloop", http=guard.protocol_class(), ws="none",
                          lifespan="on", access_log=False, log_level="warning", timeout_graceful_shutdown=10,
                          server_header=False, date_header=False,
                          # uvicorn annotates int but hands it to loop.call_later, which takes float seconds
                          timeout_keep_alive=settings.edge_keepalive_timeout,  # type: ignore[arg-type]
                          proxy_headers=bool(proxies), forwarded_allow_ips=proxies)


class EdgeServer(uvicorn.Server):
    """uvicorn's server for the edge, which also serves /healthz, /readyz and /metrics on their own address when
    WXARCHIVE_EDGE_OPS_PORT is set: started before the callback port opens, stopped after it closed."""

    def __init__(self, app: EdgeApp, settings: Settings) -> None:
        super().__init__(server_config(app, settings))
        self.edge_app, self.settings = app, settings
        self.ops: web.AppRunner | None = None
        self.ops_url = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        s = self.settings
        if s.edge_ops_port:
            self.ops, self.ops_url = await serve_edge_ops(self.edge_app, s.edge_ops_host, s.edge_ops_port)
        try:
            await super().startup(sockets)
        except BaseException:
            await self._stop_ops()
            raise

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            await self._stop_ops()

    async def _stop_ops(self) -> None:
        if self.ops is not None:
            await self.ops.cleanup()
            self.ops = None
