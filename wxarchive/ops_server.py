"""/healthz, /readyz and /metrics for a long-running component, on its own small HTTP port.

Metrics come from a custom collector read at scrape time, so the component's hot path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from wxarchive.http_server import serve_app

__all__ = ["serve_ops"]


async def serve_ops(collector: Collector | list[Collector], readiness: Callable[[], tuple[str, dict[str, Any]]],
                    host: str, port: int) -> tuple[web.AppRunner, str]:
    """`readiness()` gives (why not ready, details), "" when ready; /readyz answers 200, or 503 with the reason,
    so whoever looks (an operator, `wxarchive up`, a load balancer's log) learns what it waits for."""
    registry = CollectorRegistry()
    for one in collector if isinstance(collector, list) else [collector]:
        registry.register(one)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(_: web.Request) -> web.Response:
        reason, details = readiness()
        body = {"ready": True, **details} if not reason else {"ready": False, "reason": reason, **details}
        return web.json_response(body, status=503 if reason else 200)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return await serve_app(app, host, port)
