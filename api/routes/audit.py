"""GET /api/v1/audit: the audit trail, newest first, for compliance and admin; reading it is audited too."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query

from access.roles import Permission
from api.audit_gate import Access
from api.auth import require
from api.clickhouse import ArchiveReader
from api.context import ApiContext, app_context
from api.cursors import MAX_CURSOR_CHARS, decode_time_key, encode_cursor
from api.models import AuditEntry, AuditPage
from api.routes.common import ERRORS

__all__ = ["audit_page", "router"]

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=ERRORS)

AUDIT = "audit"
_SQL = """
SELECT id, toUnixTimestamp64Milli(time) AS time_ms, principal, token_id, role, action, parameters, result_count,
       status, request_id, client
FROM wxarchive.v_audit_log
WHERE (NOT {paged:Bool} OR (toUnixTimestamp64Milli(time), id) < ({after_time:Int64}, {after_id:String}))
  AND ({principal:String} = '' OR principal = {principal:String})
  AND ({action:String} = '' OR action = {action:String})
ORDER BY time DESC, id DESC
LIMIT {limit:UInt32}
"""


async def audit_page(reader: ArchiveReader, limit: int, cursor: str | None, principal: str = "", action: str = ""
                     ) -> AuditPage:
    """A page of the trail as the sink has written it (a record reaches the table a second or two after its
    request)."""
    after_time, after_id = decode_time_key(cursor, AUDIT) if cursor is not None else (0, "")
    rows = await reader.rows(_SQL, {"paged": cursor is not None, "after_time": after_time, "after_id": after_id,
                                    "principal": principal, "action": action, "limit": limit + 1})
    more = len(rows) > limit
    rows = rows[:limit]
    records = [AuditEntry(**{**r, "parameters": _parameters(r["parameters"])}) for r in rows]
    next_cursor = encode_cursor(AUDIT, (rows[-1]["time_ms"], rows[-1]["id"])) if more else None
    return AuditPage(records=records, next_cursor=next_cursor)


def _parameters(text: str) -> dict[str, object]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"unparsed": text}
    return value if isinstance(value, dict) else {"value": value}


@router.get("/audit", response_model=AuditPage, summary="The audit trail, newest first (compliance, admin)")
async def list_audit(
        context: Annotated[ApiContext, Depends(app_context)],
        access: Annotated[Access, Depends(require(Permission.AUDIT_READ, "audit.list"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
        principal: Annotated[str, Query(max_length=200, description="Only this principal's records")] = "",
        action: Annotated[str, Query(max_length=100, description="Only this action, e.g. sql.query")] = "",
) -> AuditPage:
    page = await audit_page(context.archive, limit, cursor, principal, action)
    await access.record(len(page.records))
    return page
