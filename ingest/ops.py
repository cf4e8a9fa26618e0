"""The edge's operations endpoints on their own address, when WXARCHIVE_EDGE_OPS_PORT is set.

/healthz, /readyz and /metrics then answer on `edge_ops_host:edge_ops_port` (loopback by default), served
like the worker's and the sink's (wxarchive.ops_server), and the public callback port serves /callback alone:
a stranger learns nothing from it but 404. With the port 0 (the default) they stay on the callback port,
as before, so existing probes and `wxarchive up` keep working.
"""

from __future__ import annotations

from aiohttp import web

from ingest.app import EdgeApp, Receive, Scope, Send
from ingest.protocol import refusal_body
from wxarchive.ops_server import serve_ops

NOT_FOUND = refusal_body("not found")


class CallbackOnly:
    """The callback port's ASGI app when operations have their own port: /callback and below, else 404."""

    def __init__(self, app: EdgeApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path != "/callback" and not path.startswith("/callback/"):
                await send({"type": "http.response.start", "status": 404, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(NOT_FOUND)).encode())]})
                await send({"type": "http.response.body", "body": NOT_FOUND})
                return
        await self.app(scope, receive, send)


async def serve_edge_ops(app: EdgeApp, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve the app's metrics (its registry, with the server's counters in it) and readiness (Kafka reachable,
    spool drainable) on `host:port`; returns the runner, for cleanup(), and the base URL."""
    return await serve_ops(app.metrics.registry, lambda: (app.handoff.not_ready_reason, {}), host, port)
