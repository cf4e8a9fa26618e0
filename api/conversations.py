"""Conversations as the archive holds them: the accounts, each account's conversation list, a conversation's
transcript, one message with its evidence. Queries and the mapping of their rows; the routes are thin
(api/routes/conversations.py), and the SCRM's endpoints read the same lists (api/scrm.py).

Every list is keyset-paged (api/cursors.py): a page ends with the sort key of its last row and the next page starts
strictly after it, so rows added meanwhile never shift a page (DESIGN: "every list is paged by an opaque cursor that
stays stable while new messages arrive"). The conversation list is sorted by last activity, newest first, then by
conversation id; a conversation that gets a new message while a client pages moves to the top, above the cursor,
and is seen again on the client's next first page, never twice in one pass. Transcripts are sorted by (time,
identity), which no new message changes for the messages already there.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from api.clickhouse import ArchiveReader, Row
from api.cursors import decode_time_key, encode_cursor
from api.errors import ApiError, NotFound
from api.models import (
    Account,
    ContactNow,
    Conversation,
    ConversationPage,
    LastMessage,
    Message,
    MessageEvidence,
    RawCallback,
    Transcript,
)

__all__ = ["ConversationQuery", "accounts", "conversation_page", "conversation_rows", "message_evidence",
           "transcript"]

CONVERSATIONS = "conversations"
MESSAGES = "messages"

# one conversation list row: the view's aggregate with the latest contact snapshot of the conversation's id
_CONVERSATIONS_SQL = """
SELECT l.account AS account, l.conversation AS conversation, l.is_group AS is_group,
       l.conversation_name AS name_archived, toUnixTimestamp64Milli(l.last_time) AS last_time_ms,
       formatDateTime(l.last_time, '%Y-%m-%d %H:%i:%S') AS last_time_text, l.last_identity AS last_identity,
       l.last_sender AS last_sender, l.last_type AS last_type, l.last_text AS last_text,
       l.last_is_self AS last_is_self, l.message_count AS message_count,
       c.snapshots > 0 AS has_contact, c.nickname AS nickname_now, c.remark AS remark_now,
       c.big_head AS head_url, toUnixTimestamp64Milli(c.fetched_at) AS contact_fetched_ms
FROM wxarchive.v_last_messages AS l
LEFT JOIN (
    SELECT account, wxid, nickname, remark, big_head, fetched_at, snapshots
    FROM wxarchive.v_contacts WHERE {account:String} = '' OR account = {account:String}
) AS c ON c.account = l.account AND c.wxid = l.conversation
WHERE ({account:String} = '' OR l.account = {account:String})
  AND ({kind:String} = '' OR l.is_group = ({kind:String} = 'group'))
  AND ({name:String} = ''
       OR positionCaseInsensitiveUTF8(l.conversation_name, {name:String}) > 0
       OR positionCaseInsensitiveUTF8(c.nickname, {name:String}) > 0
       OR positionCaseInsensitiveUTF8(c.remark, {name:String}) > 0
       OR position(l.conversation, {name:String}) > 0)
  AND (NOT {paged:Bool} OR (toUnixTimestamp64Milli(l.last_time), l.conversation) < ({after_time:Int64}, {after_id:String}))
ORDER BY l.last_time DESC, l.conversation DESC, l.account
LIMIT {limit:UInt32} OFFSET {skip:UInt32}
"""

_MESSAGE_COLUMNS = """
account, identity, toString(new_msg_id) AS new_msg_id, toString(msg_id) AS msg_id, type_code, type_name, native_type,
is_group, conversation, conversation_name, sender, sender_name, sender_remark, sender_alias, receiver, is_self,
toUnixTimestamp64Milli(time) AS time_ms, text, title, description, url, file_name,
toString(quoted_new_msg_id) AS quoted_new_msg_id, quoted_text, toString(recalled_new_msg_id) AS recalled_new_msg_id,
recalled, at_list, extra, enriched, moderation_hits, toUnixTimestamp64Milli(received_at) AS received_at_ms,
toUnixTimestamp64Milli(archived_at) AS archived_at_ms, source_partition, source_offset
"""

_IN_CONVERSATION = "account = {account:String} AND conversation = {conversation:String}"
_KEY = "(toUnixTimestamp64Milli(time), identity)"
_TRANSCRIPT = {
    # direction -> (condition on the key, order): "before" reads backwards from the cursor and is turned around
    "latest": ("1", "DESC"),
    "before": (f"{_KEY} < ({{key_time:Int64}}, {{key_id:String}})", "DESC"),
    "after": (f"{_KEY} > ({{key_time:Int64}}, {{key_id:String}})", "ASC"),
}


@dataclass(frozen=True)
class ConversationQuery:
    """One page of an account's conversation list (`account` "": every account's, for the SCRM): `kind` "group",
    "private" or "" (both); `name` a part of the name as archived or now, or of the id; after the key of `cursor`;
    `skip` is for the SCRM's page numbers only."""

    account: str
    kind: str = ""
    name: str = ""
    cursor: str | None = None
    limit: int = 50
    skip: int = 0


async def accounts(reader: ArchiveReader) -> list[Account]:
    rows = await reader.rows("""
        SELECT account, count() AS conversations, sum(message_count) AS messages,
               toUnixTimestamp64Milli(max(last_time)) AS last_time_ms
        FROM wxarchive.v_last_messages GROUP BY account ORDER BY account""")
    return [Account(account=r["account"], conversations=r["conversations"], messages=r["messages"],
                    last_time_ms=r["last_time_ms"]) for r in rows]


async def conversation_rows(reader: ArchiveReader, query: ConversationQuery) -> list[Row]:
    """The rows of one page (at most `limit`), as _CONVERSATIONS_SQL names them."""
    after_time, after_id = decode_time_key(query.cursor, CONVERSATIONS) if query.cursor is not None else (0, "")
    return await reader.rows(_CONVERSATIONS_SQL, {
        "account": query.account, "kind": query.kind, "name": query.name, "paged": query.cursor is not None,
        "after_time": after_time, "after_id": after_id, "limit": query.limit, "skip": query.skip})


async def conversation_page(reader: ArchiveReader, query: ConversationQuery) -> ConversationPage:
    """A page of the list and the cursor of the next one; NotFound for an account with nothing archived."""
    rows = await conversation_rows(reader, ConversationQuery(query.account, query.kind, query.name, query.cursor,
                                                             query.limit + 1))
    if not rows and query.cursor is None:
        await _require_account(reader, query.account)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = encode_cursor(CONVERSATIONS, (rows[-1]["last_time_ms"], rows[-1]["conversation"])) if more else None
    return ConversationPage(conversations=[_conversation(r) for r in rows], next_cursor=next_cursor)


def _conversation(r: Row) -> Conversation:
    now = ContactNow(nickname=r["nickname_now"], remark=r["remark_now"], fetched_at_ms=r["contact_fetched_ms"]
                     ) if r["has_contact"] else None
    shown = (now.remark or now.nickname) if now else ""
    last = LastMessage(identity=r["last_identity"], sender=r["last_sender"], type=r["last_type"], text=r["last_text"],
                       is_self=bool(r["last_is_self"]), time_ms=r["last_time_ms"])
    return Conversation(conversation=r["conversation"], is_group=bool(r["is_group"]),
                        name=shown or r["name_archived"] or r["conversation"], name_archived=r["name_archived"],
                        name_now=now, message_count=r["message_count"], last_message=last)


async def _require_account(reader: ArchiveReader, account: str) -> None:
    found = await reader.rows("SELECT 1 FROM wxarchive.v_last_messages WHERE account = {account:String} LIMIT 1",
                              {"account": account})
    if not found:
        raise NotFound(f"no conversations are archived for the account {account!r}; GET /api/v1/accounts lists them")


async def transcript(reader: ArchiveReader, account: str, conversation: str, *, before: str | None = None,
                     after: str | None = None, around: str | None = None, n: int = 10, limit: int = 50) -> Transcript:
    """A page of a conversation, oldest first: the latest `limit` messages, or `limit` before or after a cursor, or
    message `around` with `n` before and `n` after it."""
    if sum(x is not None for x in (before, after, around)) > 1:
        raise ApiError("give at most one of before, after and around")
    where = {"account": account, "conversation": conversation}
    if around is not None:
        anchor = await _messages(reader, f"{_IN_CONVERSATION} AND identity = {{identity:String}}", "ASC", 1,
                                 {**where, "identity": around})
        if not anchor:
            raise NotFound(f"no message {around!r} in the conversation {conversation!r} of {account!r}")
        key = (anchor[0].time_ms, anchor[0].identity)
        older = await _page(reader, where, "before", key, n)
        newer = await _page(reader, where, "after", key, n)
        return _transcript([*reversed(older[0]), anchor[0], *newer[0]], older[1], newer[1])
    if before is not None or after is not None:
        direction = "before" if before is not None else "after"
        cursor_key = decode_time_key(before if before is not None else after or "", MESSAGES)
        found, more = await _page(reader, where, direction, cursor_key, limit)
        if direction == "before":
            return _transcript(list(reversed(found)), more, True)
        return _transcript(found, True, more)
    found, more = await _page(reader, where, "latest", (0, ""), limit)
    if not found:
        raise NotFound(f"no messages are archived in the conversation {conversation!r} of {account!r}")
    return _transcript(list(reversed(found)), more, False)


async def _page(reader: ArchiveReader, where: dict[str, str], direction: str, key: tuple[int, str], limit: int
                ) -> tuple[list[Message], bool]:
    condition, order = _TRANSCRIPT[direction]
    found = await _messages(reader, f"{_IN_CONVERSATION} AND {condition}", order, limit + 1,
                            {**where, "key_time": key[0], "key_id": key[1]})
    return found[:limit], len(found) > limit


def _transcript(messages: list[Message], more_before: bool, more_after: bool) -> Transcript:
    return Transcript(messages=messages, before_cursor=messages[0].cursor if messages else None,
                      after_cursor=messages[-1].cursor if messages else None, has_more_before=more_before,
                      has_more_after=more_after)


async def _messages(reader: ArchiveReader, where: str, order: str, limit: int, parameters: dict[str, Any]
                    ) -> list[Message]:
    # v_messages reads the table FINAL, which merges every row of the account's granules (the conversation is not
    # in the table's key). The newest version of each message, taken here from the conversation's rows alone, is
    # the same row in well under half the time (benchmarks/api_conversations.py prints both)
    rows = await reader.rows(f"""
        SELECT {_MESSAGE_COLUMNS} FROM (
            SELECT m.*, (m.account, m.new_msg_id) IN (SELECT account, toNullable(new_msg_id) FROM wxarchive.recalls)
                       AS recalled
            FROM wxarchive.messages AS m
            WHERE {where}
            ORDER BY time {order}, identity {order}, enriched DESC
            LIMIT 1 BY identity
            LIMIT {{limit:UInt32}})
        ORDER BY time {order}, identity {order}""", {**parameters, "limit": limit})
    return [_message(r) for r in rows]


def _message(r: Row) -> Message:
    fields = {name: r[name] for name in Message.model_fields if name in r}
    for name in ("new_msg_id", "msg_id", "quoted_new_msg_id", "recalled_new_msg_id"):
        fields[name] = r[name] if r[name] not in (None, "", "\\N") else None
    return Message(**fields, cursor=encode_cursor(MESSAGES, (r["time_ms"], r["identity"])))


async def message_evidence(reader: ArchiveReader, raw_topic: str, account: str, identity: str) -> MessageEvidence:
    """One message with the raw callback it was parsed from, found by its Kafka coordinates."""
    rows = await reader.rows(f"SELECT {_MESSAGE_COLUMNS} FROM wxarchive.v_messages "
                             "WHERE account = {account:String} AND identity = {identity:String} LIMIT 1",
                             {"account": account, "identity": identity})
    if not rows:
        raise NotFound(f"no message {identity!r} is archived for the account {account!r}")
    raw = await reader.rows("""
        SELECT topic, partition, offset, toUnixTimestamp64Milli(received_at) AS received_at_ms, key,
               base64Encode(body) AS body_base64, headers
        FROM wxarchive.raw_callbacks
        WHERE topic = {topic:String} AND partition = {partition:UInt32} AND offset = {offset:UInt64}
        LIMIT 1""", {"topic": raw_topic, "partition": rows[0]["source_partition"], "offset": rows[0]["source_offset"]})
    return MessageEvidence(message=_message(rows[0]), raw=_raw(raw[0]) if raw else None)


def _raw(r: Row) -> RawCallback:
    body = base64.b64decode(r["body_base64"])
    try:
        text, utf8 = body.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = body.decode("utf-8", errors="replace"), False
    return RawCallback(topic=r["topic"], partition=r["partition"], offset=r["offset"],
                       received_at_ms=r["received_at_ms"], key=r["key"], headers=dict(r["headers"]),
                       body_base64=r["body_base64"], body_text=text, body_is_utf8=utf8)
