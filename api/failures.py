"""Every failure answered as JSON with a reason, FastAPI's own (404, 405, 422) included, and recorded once in the
audit trail when the request had been let in to read or change archive content (api/audit_gate.py).

Statuses: the API's own refusals keep theirs (400, 401, 403, 404, 413, 422); everything that is the archive's or
Kafka's trouble rather than the caller's (ClickHouse away, the audit record not acknowledged, a query of ours that
ClickHouse refused) is 503, so a client retries; only a bug is 500. On the SCRM's paths the body also carries the
SCRM's envelope (`msg`, and `code` = the HTTP status).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.auth import request_access
from api.errors import ApiError, error_name
from wxarchive.errors import AuditUnavailable, WxarchiveError

__all__ = ["install_error_handlers"]

log = logging.getLogger("wxarchive.api")

SCRM_PREFIX = "/wechat_api/"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WxarchiveError, _on_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_bug)


async def _on_error(request: Request, exc: WxarchiveError) -> JSONResponse:
    status = exc.http_status if isinstance(exc, ApiError) else 503
    if not isinstance(exc, ApiError):
        log.warning("request failed", extra={"path": request.url.path, "error": f"{type(exc).__name__}: {exc}",
                                             "request_id": _request_id(request)})
    error = "audit_unavailable" if isinstance(exc, AuditUnavailable) else error_name(exc, status)
    return await _answer(request, status, error, str(exc), audited=True)


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                for e in exc.errors()[:5]]
    return await _answer(request, 422, "invalid_request", "; ".join(problems) or "the request does not validate",
                         audited=False)  # nothing was read: the route never ran


async def _on_http(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 404:
        reason = f"no route {request.method} {request.url.path}; /docs lists them"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        reason = f"{request.method} is not served at {request.url.path}" + (f"; use {allowed}" if allowed else "")
    else:
        reason = str(exc.detail)
    response = await _answer(request, exc.status_code, error_name(None, exc.status_code), reason, audited=True)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _on_bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected failure", extra={"path": request.url.path, "request_id": _request_id(request)})
    return await _answer(request, 500, "internal_error", "an internal error; the log holds it under this request's "
                         "id", audited=True)


async def _answer(request: Request, status: int, error: str, reason: str, *, audited: bool) -> JSONResponse:
    access = request_access(request)
    if audited and access is not None and access.recorded is None:
        try:
            await access.record(None, status)
        except AuditUnavailable as exc:
            status, error, reason = 503, "audit_unavailable", str(exc)
    body: dict[str, object] = {"error": error, "reason": reason, "request_id": _request_id(request)}
    if request.url.path.startswith(SCRM_PREFIX):
        body = {"msg": reason, "code": status, **body}
    headers = {"WWW-Authenticate": 'Bearer realm="wxarchive"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _request_id(request: Request) -> str | None:
    request_id: str | None = getattr(request.state, "request_id", None)
    return request_id
