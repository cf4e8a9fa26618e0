"""/api/v1: the accounts, an account's conversations, a conversation's transcript, one message with its evidence.
Each request is let in by the `conversations.read` permission and audited once before it is answered."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from access.roles import Permission
from api.audit_gate import Access
from api.auth import require
from api.context import ApiContext, app_context
from api.conversations import ConversationQuery, accounts, conversation_page, message_evidence, transcript
from api.cursors import MAX_CURSOR_CHARS
from api.models import AccountList, ConversationPage, MessageEvidence, Transcript
from api.routes.common import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["conversations"], responses=ERRORS)

READ = Permission.CONVERSATIONS_READ
Context = Annotated[ApiContext, Depends(app_context)]
Account = Annotated[str, Path(min_length=1, max_length=256, description="The archived account (wcId)")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description="A cursor a page gave")]


@router.get("/accounts", response_model=AccountList, summary="The accounts in the archive")
async def list_accounts(context: Context, access: Annotated[Access, Depends(require(READ, "accounts.list"))]
                        ) -> AccountList:
    found = await accounts(context.archive)
    await access.record(len(found))
    return AccountList(accounts=found)


@router.get("/accounts/{account}/conversations", response_model=ConversationPage,
            summary="An account's conversations, latest activity first")
async def list_conversations(
        context: Context, access: Annotated[Access, Depends(require(READ, "conversations.list"))], account: Account,
        name: Annotated[str, Query(max_length=200, description="A part of the name (as archived or now) or id")] = "",
        kind: Annotated[Literal["group", "private"] | None, Query(description="Only groups or only private chats")
                        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: Cursor = None) -> ConversationPage:
    page = await conversation_page(context.archive, ConversationQuery(account, kind or "", name, cursor, limit))
    await access.record(len(page.conversations))
    return page


@router.get("/accounts/{account}/conversations/{conversation}/messages", response_model=Transcript,
            summary="A conversation's transcript, paged both ways, or around one message")
async def list_messages(
        context: Context, access: Annotated[Access, Depends(require(READ, "messages.list"))], account: Account,
        conversation: Annotated[str, Path(min_length=1, max_length=256, description="Group id or peer wxid")],
        before: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description="Messages older than this "
                                            "cursor (a page's before_cursor)")] = None,
        after: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description="Messages newer than this "
                                           "cursor (a page's after_cursor)")] = None,
        around: Annotated[str | None, Query(min_length=1, max_length=256, description="A message identity: it, "
                                            "with n messages before and n after it")] = None,
        n: Annotated[int, Query(ge=0, le=200, description="With around: messages on each side")] = 10,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Transcript:
    page = await transcript(context.archive, account, conversation, before=before, after=after, around=around, n=n,
                            limit=limit)
    await access.record(len(page.messages))
    return page


@router.get("/accounts/{account}/messages/{identity}", response_model=MessageEvidence,
            summary="One message, with its raw callback and Kafka coordinates as evidence")
async def get_message(
        context: Context, access: Annotated[Access, Depends(require(READ, "messages.get"))], account: Account,
        identity: Annotated[str, Path(min_length=1, max_length=256, description="newMsgId, or h:… for a callback "
                                                                              "without one")]) -> MessageEvidence:
    found = await message_evidence(context.archive, context.raw_topic, account, identity)
    await access.record(1)
    return found
