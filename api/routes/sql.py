"""POST /api/v1/sql: one read-only statement for the analyst role, under the API's caps (api/sql.py), audited
with its SQL text whatever it ends with (answered, refused or failed)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Response

from access.roles import Permission, allowed
from api.audit_gate import Access
from api.auth import require
from api.context import ApiContext, app_context
from api.errors import ApiError, Forbidden
from api.models import ErrorBody, SqlRequest, SqlResult
from api.routes.common import ERRORS
from api.sql import check_statement, run_capped
from door.reader import DoorRefused
from door.statements import touches

__all__ = ["router"]

AUDIT_TABLES = frozenset({"audit_log", "principals"})  # their v_ views too: the names are found inside names

router = APIRouter(prefix="/api/v1", tags=["sql"], responses={
    **ERRORS, 413: {"model": ErrorBody, "description": "The result passed the row or byte cap"}})


class SqlRefused(ApiError):
    """ClickHouse (or the door's check) refused the statement: its own code and words, with a status a server
    would give it; a failure of the query itself (memory, a bad cast) is the caller's to fix, so 422, not 5xx."""

    error = "sql_refused"

    def __init__(self, refused: DoorRefused) -> None:
        super().__init__(str(refused))
        status = refused.http_status
        self.http_status = status if status < 500 or status == 503 else 422


@router.post("/sql", response_model=SqlResult, summary="Run one read-only SQL statement (analyst)")
async def run_sql(body: SqlRequest, context: Annotated[ApiContext, Depends(app_context)],
                  access: Annotated[Access, Depends(require(Permission.SQL_QUERY, "sql.query"))]) -> Response:
    access.note(query=body.query)
    limits = context.sql_limits
    try:
        statement = check_statement(body.query)
        if not allowed(access.caller.role, Permission.AUDIT_READ):
            # the audit log and the principals are for compliance and admin only, through SQL as anywhere
            why = touches(statement, AUDIT_TABLES)
            if why is not None:
                raise Forbidden(why)
        result = await context.sql.call(lambda client: run_capped(client, statement, limits))
    except DoorRefused as exc:
        raise SqlRefused(exc) from None
    await access.record(len(result.rows))
    # built here, not validated through the model: a capped result may still be 100,000 rows
    payload = {"columns": [{"name": n, "type": t} for n, t in zip(result.names, result.types)], "rows": result.rows,
               "row_count": len(result.rows), "bytes": result.bytes}
    return Response(orjson.dumps(payload), media_type="application/json")
