"""The API as one FastAPI app: its routers, its error answers, and a thin outer layer that gives every request an
id (X-Request-Id, and the id of its audit record) and counts it by route and status. Built from an ApiContext
(api/service.py makes one from the settings), so a test can build two apps side by side."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import ApiContext
from api.failures import install_error_handlers
from api.metrics import UNMATCHED, ApiMetrics
from api.routes import audit, conversations, health, scrm, sql, tokens
from wxarchive import __version__

__all__ = ["build_app"]

DESCRIPTION = """\
The read side of wxarchive: the archived WeChat conversations, read-only SQL, the audit trail, and the SCRM's own
`/wechat_api/*` endpoints in the SCRM's shapes.

Every route but the health ones takes `Authorization: Bearer TOKEN` (`wxarchive tokens create --name N --role R`);
each token has one role: viewer, moderator, compliance, analyst or admin. Every request that reads or changes archive
content leaves one audit record on Kafka before it is answered, or is refused with 503. Lists are paged by opaque
cursors. Every error is JSON: `{"error": …, "reason": …, "request_id": …}`.
"""


class Observed:
    """Outermost layer: a request id for every request, then its route template, status and time in the metrics."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception that escaped is answered 500 outside this layer

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            self.metrics.observe(getattr(route, "path", UNMATCHED), scope["method"], status,
                                 time.perf_counter() - started)


def build_app(context: ApiContext) -> FastAPI:
    app = FastAPI(title="wxarchive API", version=__version__, description=DESCRIPTION, docs_url="/docs",
                  redoc_url=None)
    app.state.context = context
    for router in (conversations.router, sql.router, audit.router, tokens.router, scrm.router, health.router):
        app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(Observed, metrics=context.metrics)
    return app
