"""The SCRM's view of the archive: the archive's conversations, members and counts mapped into seed 003's shapes
(api/scrm_models.py), field by field from what the archive holds.

What the archive cannot know (the SCRM's own database ids, its queue names, its login flags) is filled with the
seed's neutral values, or derived stably where a client may key on it: `wechatContactId` and `wechatUserId` are
31-bit numbers derived from the account and the contact's wxid, the same in every answer and after a replay.
docs/api.md lists every field and its source.

The SCRM names an account by its `uin`; the archive by its wcId. `uin_of(account)` gives the uin to show (a
configured mapping, else the wcId itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from api.clickhouse import ArchiveReader, Row
from api.conversations import ConversationQuery, conversation_rows
from api.scrm_models import (
    ScrmGroupConversation,
    ScrmLastMsgData,
    ScrmLastMsgList,
    ScrmMember,
    ScrmPrivateConversation,
)

__all__ = ["SCRM_PAGE_SIZE", "SCRM_PRIVATE_MAX", "group_conversations", "member_count", "members",
           "private_conversations", "stable_id"]

SCRM_PAGE_SIZE = 20      # groups per `page` of the group list (the seed does not say; its UI shows a short list)
SCRM_PRIVATE_MAX = 200   # private conversations in one answer (the seed's private list has no paging)
UinOf = Callable[[str], str]

# WeChat's own msgType for the archive's type names, when the callback did not carry it
_MSG_TYPES = {"text": 1, "image": 3, "voice": 34, "card": 42, "video": 43, "emoji": 47, "location": 48,
              "voice_call": 50, "voice_call_hangup": 50, "recall": 10002, "pat": 10002}
_APP_MESSAGE = 49  # links, files, mini programs, quotes, transfers, music, …: WeChat's "app message"
# the seed's lastMsg `type` ("pic" for an image); media messages also carry fileName, fileSize and url
_MEDIA_TYPES = {"image": "pic", "video": "video", "voice": "voice", "file": "file", "file_sent": "file",
                "emoji": "emoji"}


def stable_id(*parts: str) -> int:
    """A positive 31-bit number for the SCRM's integer ids, the same for the same parts everywhere, always."""
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:4], "big") & 0x7FFFFFFF


async def private_conversations(reader: ArchiveReader, account: str, uin_of: UinOf) -> ScrmLastMsgList:
    """findLastMsgList (单聊): the account's private conversations, newest first ("" for every account's)."""
    rows = await conversation_rows(reader, ConversationQuery(account, "private", limit=SCRM_PRIVATE_MAX))
    details = await _last_message_details(reader, rows)
    items = [ScrmPrivateConversation(
        wechatContactId=stable_id(r["account"], r["conversation"]), contactFlag=3, wechatUserUin=uin_of(r["account"]),
        nickName=_nickname(r), remarkName=r["remark_now"], contactType=0, userName=r["conversation"],
        wechatUserName=r["account"], headImgUrl=r["head_url"], createTime=r["last_time_text"],
        lastMsg=_last_msg(r, details, uin_of), wechatUserId=stable_id(r["account"]), uin=uin_of(r["account"]),
        time=r["last_time_ms"]) for r in rows]
    # delData: conversations deleted since the client's last call; the archive deletes nothing (holds and deletions
    # come with part 2 of the read side)
    return ScrmLastMsgList(msg="查询成功", code=200, data=ScrmLastMsgData(delData=[], lastMsgList=items))


async def group_conversations(reader: ArchiveReader, account: str, name: str, page: int, page_size: int,
                              uin_of: UinOf) -> list[ScrmGroupConversation]:
    """findLastMsgList (群聊): one page of the account's groups, newest first, filtered by a part of the name."""
    rows = await conversation_rows(reader, ConversationQuery(account, "group", name, limit=page_size,
                                                             skip=(page - 1) * page_size))
    details = await _last_message_details(reader, rows)
    return [ScrmGroupConversation(
        createTime=r["last_time_text"], wechatContactId=stable_id(r["account"], r["conversation"]),
        wechatUserId=stable_id(r["account"]), chatRoomSettings="0", contactType=0, uin=uin_of(r["account"]),
        wechatUserUin=uin_of(r["account"]), wechatUserName=r["account"], userName=r["conversation"],
        nickName=_nickname(r), remarkName=r["remark_now"], contactFlag=3, isDelete=0, headImgUrl=r["head_url"],
        isSaving=None, seq=r["conversation"], verifyFlag="0", pyinitial=_nickname(r), pyquanPin=_nickname(r),
        time=r["last_time_ms"], lastMsg=_last_msg(r, details, uin_of)) for r in rows]


def _nickname(r: Row) -> str:
    """The name now if the worker took a snapshot, else the name the messages carried, else the id."""
    return str(r["nickname_now"] or r["name_archived"] or r["conversation"])


async def _last_message_details(reader: ArchiveReader, rows: list[Row]) -> dict[tuple[str, str], Row]:
    """What the conversation view leaves out of each last message: its receiver, WeChat type, file name and URL."""
    if not rows:
        return {}
    found = await reader.rows("""
        SELECT account, identity, receiver, native_type, type_name, file_name, url
        FROM wxarchive.v_messages WHERE (account, identity) IN {keys:Array(Tuple(String, String))}""",
                              {"keys": [(r["account"], r["last_identity"]) for r in rows]})
    return {(d["account"], d["identity"]): d for d in found}


def _last_msg(r: Row, details: dict[tuple[str, str], Row], uin_of: UinOf) -> str:
    """The seed's `lastMsg`: a JSON-encoded object, keys in the seed's order, media keys only on media."""
    d = details.get((r["account"], r["last_identity"]), {})
    type_name = str(r["last_type"])
    native = d.get("native_type")
    msg_type = native if native is not None else _MSG_TYPES.get(type_name, _APP_MESSAGE)
    receiver = r["conversation"] if r["last_is_self"] or r["is_group"] else r["account"]
    media = _MEDIA_TYPES.get(type_name)
    doc: dict[str, Any] = {"content": r["last_text"], "createTime": r["last_time_ms"]}
    if media:
        doc |= {"fileName": d.get("file_name", ""), "fileSize": ""}
    doc |= {"fromUserName": r["last_sender"], "loginer": "1", "msgId": r["last_identity"], "msgSourceCd": 11,
            "msgType": msg_type, "queueName": "", "sendStatus": 1, "toUserName": d.get("receiver") or receiver,
            "tokenId": ""}
    if media:
        doc["type"] = media
    doc["uin"] = uin_of(r["account"])
    if media:
        doc["url"] = d.get("url", "")
    doc["wechatUser"] = _wechat_user(r["account"], uin_of)
    return orjson.dumps(doc).decode()


def _wechat_user(account: str, uin_of: UinOf) -> str:
    """The seed's `wechatUser`: the archived account, JSON-encoded; the SCRM's own bookkeeping fields are null."""
    return orjson.dumps({
        "wechatUserId": stable_id(account), "uin": uin_of(account), "userName": account, "nickName": "",
        "headImgUrl": "", "remarkName": None, "remarkPYInitial": None, "remarkPYQuanPin": None, "sex": "", "status": 1,
        "verifyFlag": "0", "adminUserId": None, "createTime": None, "lastLoginTime": None, "lastLoginIP": None,
        "secName": None, "flag": None, "wechatMeta": None, "serverId": "", "childId": "", "mqServerId": "",
        "meta": None, "snsBg": None, "area": None, "signature": None, "phone": None, "bindQQ": None,
        "pyinitial": None, "pyquanPin": None}).decode()


_MEMBERS_SQL = """
SELECT s.wxid AS wxid, s.name_archived AS name_archived, s.alias_archived AS alias_archived,
       c.snapshots > 0 AS has_contact, c.nickname AS nickname, c.remark AS remark, c.alias AS alias,
       c.signature AS signature, c.province AS province, c.city AS city, c.big_head AS big_head
FROM (
    SELECT sender AS wxid, argMaxIf(sender_name, time, sender_name != '') AS name_archived,
           argMaxIf(sender_alias, time, sender_alias != '') AS alias_archived
    FROM (
        SELECT sender, sender_name, sender_alias, time FROM wxarchive.v_messages
        WHERE account = {account:String} AND conversation = {group:String} AND sender != ''
        UNION ALL
        SELECT sender, '' AS sender_name, '' AS sender_alias, time FROM wxarchive.v_account_events
        WHERE account = {account:String} AND conversation = {group:String} AND sender != ''
    )
    WHERE {wxid:String} = '' OR sender = {wxid:String}
    GROUP BY sender
) AS s
LEFT JOIN (
    SELECT wxid, nickname, remark, alias, signature, province, city, big_head, snapshots
    FROM wxarchive.v_contacts WHERE account = {account:String}
) AS c ON c.wxid = s.wxid
ORDER BY s.wxid
"""

# the latest group info event (85001 and the like carry the owner and the member count in their body)
_GROUP_INFO_SQL = """
SELECT argMax(JSONExtractString(body, 'data', 'chatRoomOwner'), time) AS owner,
       argMax(JSONExtractUInt(body, 'data', 'memberCount'), time) AS member_count, count() AS events
FROM wxarchive.v_account_events
WHERE account = {account:String} AND conversation = {group:String} AND JSONHas(body, 'data', 'memberCount')
"""


async def members(reader: ArchiveReader, account: str, group: str, uin_of: UinOf, wxid: str = "") -> list[ScrmMember]:
    """getMember: the group's members the archive has seen (senders of its messages and people its events name),
    by wxid; only `wxid` when given (ipadGetMemberDetail)."""
    rows = await reader.rows(_MEMBERS_SQL, {"account": account, "group": group, "wxid": wxid})
    info = await reader.rows(_GROUP_INFO_SQL, {"account": account, "group": group})
    owner = info[0]["owner"] if info and info[0]["events"] else ""
    return [ScrmMember(
        PYInitial="", PYQuanPin="", alias=r["alias"] or r["alias_archived"], appAccountFlag=0, attrStatus="",
        chatRoomId=0, city=r["city"], displayName="", encryChatRoomId="", headImgUrl=r["big_head"],
        isOwner=int(bool(owner) and r["wxid"] == owner), keyWord="", memberId=0, memberStatus=0,
        nickName=r["nickname"] or r["name_archived"], province=r["province"], remarkName=r["remark"],
        remarkPYInitial="", remarkPYQuanPin="", signature=r["signature"], snsFlag=0, starFriend=0, statues=0, uin="",
        uniFriend=0, userName=r["wxid"], wechatContactId=stable_id(account, group), wechatContactUserName=group,
        wechatUserUin=uin_of(account)) for r in rows]


async def member_count(reader: ArchiveReader, account: str, group: str) -> int | None:
    """getGroupCount: the member count of the group's latest info event, else the members the archive has seen;
    None when the archive knows nothing of the group."""
    info = await reader.rows(_GROUP_INFO_SQL, {"account": account, "group": group})
    if info and info[0]["events"]:
        return int(info[0]["member_count"])
    seen = await reader.rows(_MEMBERS_SQL, {"account": account, "group": group, "wxid": ""})
    return len(seen) or None
