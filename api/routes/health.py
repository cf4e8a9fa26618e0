"""/healthz, /readyz and /metrics on the API's own port: read by `wxarchive up`, load balancers and Prometheus.
Not audited (they show no archive content) and open without a token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from api.context import ApiContext, app_context

__all__ = ["router"]

router = APIRouter(tags=["health"])
Context = Annotated[ApiContext, Depends(app_context)]


@router.get("/healthz", summary="Alive: the process answers")
async def healthz() -> dict[str, bool]:
    return {"alive": True}


@router.get("/readyz", summary="Ready: the tokens are read and ClickHouse answers (503 with the reason if not)",
            responses={503: {"description": "Not ready, with the reason"}})
async def readyz(context: Context) -> JSONResponse:
    reasons = []
    if context.principals is not None and not context.principals.ready:
        reasons.append(f"the principals topic is not read to its end yet ({context.principals.reason})")
    down = await context.archive.ping()
    if down:
        reasons.append(down)
    body: dict[str, object] = {"ready": not reasons, "insecure": context.insecure}
    if reasons:
        body["reason"] = "; ".join(reasons)
    return JSONResponse(body, status_code=503 if reasons else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(context: Context) -> Response:
    return Response(context.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
