"""/api/v1/tokens: the API's bearer tokens, for admins: list them, make one (shown once), revoke one.

The same principal events as `wxarchive tokens` (access/token_admin.py), so a token made here works, and one
revoked here is refused, in every API process within seconds. Each change is audited once: token_admin writes the
record (it knows the new token's id only once it has made it), through this request's gate.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from access.roles import Permission
from access.token_admin import AmbiguousToken, UnknownToken, create_token, list_tokens, revoke_token
from api.audit_gate import Access
from api.auth import require
from api.context import ApiContext, app_context
from api.errors import ApiError, Conflict, NotFound
from api.models import ErrorBody, NewToken, TokenInfo, TokenList, TokenRequest
from api.routes.common import ERRORS
from schemas.access import AuditRecord, Principal
from wxarchive.errors import ConfigError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["tokens"], responses=ERRORS)


class _ThroughGate:
    """token_admin's audit record, written as this request's one record (with what token_admin adds to it)."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def record(self, entry: AuditRecord) -> None:
        self.access.note(**entry.parameters)
        await self.access.record(entry.result_count, entry.status)


def _info(p: Principal) -> TokenInfo:
    return TokenInfo(token_id=p.token_id, name=p.name, role=p.role, created_at_ms=p.created_at,
                     created_by=p.created_by, revoked_at_ms=p.revoked_at)


@router.get("/tokens", response_model=TokenList, summary="Every token, revoked ones too (admin)")
async def tokens(context: Annotated[ApiContext, Depends(app_context)],
                 access: Annotated[Access, Depends(require(Permission.TOKENS_READ, "tokens.list"))]) -> TokenList:
    found = await list_tokens(context.settings)
    await access.record(len(found))
    return TokenList(tokens=[_info(p) for p in found])


@router.post("/tokens", response_model=NewToken, status_code=201,
             summary="Make a token; the answer holds it this once (admin)")
async def make_token(body: TokenRequest, context: Annotated[ApiContext, Depends(app_context)],
                     access: Annotated[Access, Depends(require(Permission.TOKENS_WRITE, "tokens.create"))]
                     ) -> NewToken:
    try:
        token, principal = await create_token(context.settings, body.name, body.role, access.caller,
                                              _ThroughGate(access))
    except ConfigError as exc:  # a name token_admin refuses (not printable)
        raise ApiError(str(exc)) from None
    return NewToken(**_info(principal).model_dump(), token=token)


@router.delete("/tokens/{token}", response_model=TokenInfo, responses={
    409: {"model": ErrorBody, "description": "More than one live token has this name: name it by its token_id"}},
    summary="Revoke a token by its id or its holder's name "
               "(admin); every API process refuses it within seconds")
async def revoke(token: Annotated[str, Path(min_length=1, max_length=100, description="token_id or name")],
                 context: Annotated[ApiContext, Depends(app_context)],
                 access: Annotated[Access, Depends(require(Permission.TOKENS_WRITE, "tokens.revoke"))]) -> TokenInfo:
    try:
        return _info(await revoke_token(context.settings, token, access.caller, _ThroughGate(access)))
    except UnknownToken as exc:
        raise NotFound(str(exc)) from None
    except AmbiguousToken as exc:
        raise Conflict(str(exc)) from None
