"""The SCRM's own endpoints (seed 003) at their paths, in their shapes, quirks included (api/scrm.py maps the
archive into them): GET everywhere, even for changes, as the seed has it. They take the same bearer tokens and
leave the same audit records as the native API; their errors keep the SCRM's envelope (`msg`, `code` = the
HTTP status) with the API's `error` and `reason` beside it.

The seed has no way to list or remove sensitive words; /wechat_api/sensitive/list and /wechat_api/sensitive/delete
add them in the same envelope (shared/reference/read-side.md §1.1).
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Response

from access.roles import Permission
from api.audit_gate import Access
from api.auth import require
from api.context import ApiContext, app_context
from api.errors import ApiError, NotFound
from api.keywords import MAX_WORD_CHARS
from api.scrm import SCRM_PAGE_SIZE, group_conversations, member_count, members, private_conversations
from api.scrm_models import (
    ScrmError,
    ScrmGroupConversation,
    ScrmKeyword,
    ScrmKeywordList,
    ScrmLastMsgList,
    ScrmMemberCount,
    ScrmMemberDetail,
    ScrmStatus,
)
from schemas.keywords import KeywordRule

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, object]] = {status: {"model": ScrmError} for status in (400, 401, 403, 404, 422, 503)}
router = APIRouter(prefix="/wechat_api", tags=["scrm"], responses=_ERRORS)

READ = Permission.CONVERSATIONS_READ
Context = Annotated[ApiContext, Depends(app_context)]
Text = Annotated[str | None, Query(max_length=256)]
Required = Annotated[str, Query(min_length=1, max_length=256)]


@router.get("/message/findLastMsgList", response_model=ScrmLastMsgList | list[ScrmGroupConversation],
            summary="查看最近会话: private chats (status) or, with uin/page/isRoom/adminUserId, one page of groups")
async def find_last_msg_list(
        context: Context, access: Annotated[Access, Depends(require(READ, "scrm.findLastMsgList"))],
        status: Annotated[int | None, Query(description="单聊: 状态标识, 默认为1 (accepted, not used)")] = None,
        adminUserId: Annotated[int | None, Query(description="群聊: 系统账号Id (accepted, not used)")] = None,
        uin: Annotated[str | None, Query(max_length=256, description="微信uin, or the account's wcId")] = None,
        isRoom: Annotated[int | None, Query(description="群聊 (the seed's example sends 0)")] = None,
        page: Annotated[int | None, Query(ge=1, le=100_000, description="群聊: page, from 1")] = None,
        wechatContactName: Annotated[str | None, Query(max_length=200, description="群聊: a part of the name")
                                     ] = None,
        pageSize: Annotated[int, Query(ge=1, le=200, description="Added: groups per page")] = SCRM_PAGE_SIZE,
) -> ScrmLastMsgList | list[ScrmGroupConversation]:
    account = context.account_for(uin)
    groups = any(v is not None for v in (adminUserId, isRoom, page, wechatContactName))
    if not groups:
        answer = await private_conversations(context.archive, account, context.uin_of)
        await access.record(len(answer.data.lastMsgList))
        return answer
    listed = await group_conversations(context.archive, account, wechatContactName or "", page or 1, pageSize,
                                       context.uin_of)
    await access.record(len(listed))
    return listed


@router.get("/chatroom/getMember", response_model=str,
            summary="查看群聊好友: the members the archive has seen, as a JSON-encoded string")
async def get_member(context: Context, access: Annotated[Access, Depends(require(READ, "scrm.getMember"))],
                     uin: Text = None, userName: Text = None, charRoomId: Required = "") -> Response:
    account = context.account_for(uin, userName)
    found = await members(context.archive, account, charRoomId, context.uin_of)
    if not found:
        raise NotFound(f"the archive has seen no member of {charRoomId!r} for the account {account!r}")
    await access.record(len(found))
    # the seed's quirk: the array, JSON-encoded, sent as a JSON string
    array = "[" + ",".join(m.model_dump_json() for m in found) + "]"
    return Response(orjson.dumps(array), media_type="application/json")


@router.get("/wechatContact/ipadGetMemberDetail", response_model=ScrmMemberDetail,
            summary="获取群成员详情: one member of a group as the archive last saw them")
async def get_member_detail(
        context: Context, access: Annotated[Access, Depends(require(READ, "scrm.ipadGetMemberDetail"))],
        chatRoomName: Required = "", uin: Text = None, userName: Required = "") -> ScrmMemberDetail:
    account = context.account_for(uin)
    found = await members(context.archive, account, chatRoomName, context.uin_of, wxid=userName)
    if not found:
        raise NotFound(f"the archive has seen no member {userName!r} of {chatRoomName!r} for the account {account!r}")
    await access.record(1)
    return ScrmMemberDetail(msg="获取群成员详情成功!", code=200, data=found[0])


@router.get("/chatroom/getGroupCount", response_model=ScrmMemberCount,
            summary="The group's member count (the seed titles this endpoint 删除并退出群聊 by mistake)")
async def get_group_count(context: Context, access: Annotated[Access, Depends(require(READ, "scrm.getGroupCount"))],
                          uin: Text = None, chatRoomId: Required = "") -> ScrmMemberCount:
    account = context.account_for(uin)
    count = await member_count(context.archive, account, chatRoomId)
    if count is None:
        raise NotFound(f"the archive knows nothing of the group {chatRoomId!r} for the account {account!r}")
    await access.record(1)
    return ScrmMemberCount(msg="请求发送成功!", code=200, data=count)


Word = Annotated[str, Query(min_length=1, max_length=MAX_WORD_CHARS, description="关键词")]


def _rule(keyword: str) -> KeywordRule:
    word = keyword.strip()
    if not word:
        raise ApiError("the keyword is blank")
    return KeywordRule(word)


@router.get("/chatroom/doSave", response_model=ScrmStatus,
            summary="设置群敏感词: add a word to the live list (workers apply it within seconds)")
async def do_save(context: Context, access: Annotated[Access, Depends(require(Permission.KEYWORDS_WRITE,
                                                                                "keywords.add"))],
                  keyword: Word) -> ScrmStatus:
    rule = _rule(keyword)
    await access.record(1)  # audited first: a change that cannot be recorded is not made
    await context.keywords.add(rule)
    return ScrmStatus(msg="成功", code=200)


@router.get("/sensitive/list", response_model=ScrmKeywordList, summary="Added: the sensitive-word list")
async def list_words(context: Context, access: Annotated[Access, Depends(require(Permission.KEYWORDS_READ,
                                                                                   "keywords.list"))]
                     ) -> ScrmKeywordList:
    rules = [r for r in await context.keywords.rules() if not r.allow]
    await access.record(len(rules))
    return ScrmKeywordList(msg="查询成功", code=200, data=[
        ScrmKeyword(keyword=r.word, category=r.category, severity=r.severity, mode=r.mode) for r in rules])


@router.get("/sensitive/delete", response_model=ScrmStatus, summary="Added: remove a word from the live list")
async def delete_word(context: Context, access: Annotated[Access, Depends(require(Permission.KEYWORDS_WRITE,
                                                                                    "keywords.remove"))],
                      keyword: Word) -> ScrmStatus:
    rule = _rule(keyword)
    await access.record(1)
    for mode in ("fuzzy", "strict"):  # the SCRM knows words, not modes: the word goes in either mode
        await context.keywords.remove(KeywordRule(rule.word, mode=mode))
    return ScrmStatus(msg="删除成功!", code=200)
