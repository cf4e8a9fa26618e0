"""One normalized archive record per callback, whatever its type.

Keys follow DESIGN.md: the account is `wcId` (never `wId`, which changes on every re-login); the
conversation is the group for group chats, else the peer (`toUser` when the account sent it, `fromUser`
when it received it). The account sent it when `self` (or `sel`) says so, and also whenever `fromUser` is
the account itself: a recall of one's own private message arrives with `self: false`. Identity is
`(wcId, newMsgId)`; a callback without a newMsgId (offline, group events, test) gets a stable hash of its
account, type and data, so a re-push has the same identity.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from schemas.callback import ASCII_INT, ASCII_SPACE, Callback, PayloadError, as_u64, echo, json_type, parse_callback
from schemas.message_types import Kind
from schemas.xml_fields import XmlFields, extract, looks_like_xml, split_sender_prefix

__all__ = ["ArchiveMessage", "parse_message"]

_MS_THRESHOLD = 100_000_000_000  # a Unix time above this is in milliseconds (year 5138 in seconds)
_MAX_INT64 = 2**63 - 1            # time_ms is an Int64 column
_INT32 = range(-(2**31), 2**31)   # native_type is an Int32 column
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # ASCII only: float() takes "١٢٣", "1_0", "nan"


@dataclass(slots=True)
class ArchiveMessage:
    account: str                 # wcId: the archived WeChat account
    platform_account: str        # E云 developer account (`account` in the envelope)
    w_id: str                    # login instance at the time; needed for API calls, never a key
    kind: str                    # schemas.message_types.Kind value
    type_code: str               # messageType, e.g. "80001"
    type_name: str               # e.g. "text"
    native_type: int | None      # data.msgType, WeChat's own subtype, when present
    is_group: bool
    conversation: str            # group id, or the private peer's wxid; "" for account events
    sender: str
    receiver: str
    is_self: bool                # sent by the archived account itself
    new_msg_id: int | None
    msg_id: int | None
    identity: str                # str(newMsgId), or "h:" + 16 hex digits of the stable hash
    time_ms: int | None          # when WeChat says it happened, Unix milliseconds
    text: str                    # the readable text: message text, reply text of a quote
    title: str = ""
    description: str = ""
    url: str = ""
    file_name: str = ""
    quoted_new_msg_id: int | None = None
    quoted_text: str = ""
    recalled_new_msg_id: int | None = None
    at_list: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""             # the callback body exactly as received

    @property
    def dedupe_key(self) -> str:
        return f"{self.account}|{self.identity}"

    @property
    def kafka_key(self) -> str:
        """`wcId|conversation`, or `wcId` alone for account events: a conversation stays on one partition."""
        return f"{self.account}|{self.conversation}" if self.conversation else self.account

    def searchable_texts(self) -> list[str]:
        """Every human-written text of the message, for moderation and search."""
        return [t for t in (self.text, self.title, self.description, self.file_name, self.quoted_text) if t]

    def to_dict(self) -> dict[str, object]:
        """A shallow dict (asdict deep-copies every list and dict, which costs more than the rest of parsing)."""
        record = {name: getattr(self, name) for name in _FIELDS}
        record["raw"] = self.raw.decode("utf-8")
        return record

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


_FIELDS = tuple(f.name for f in fields(ArchiveMessage))


def parse_message(body: bytes, *, with_xml: bool = True) -> ArchiveMessage:
    """The archive record of `body`, or PayloadError: never another exception, whatever the bytes."""
    return normalize(parse_callback(body), with_xml=with_xml)


def normalize(cb: Callback, *, with_xml: bool = True) -> ArchiveMessage:
    """`with_xml=False` checks every field and derives the keys but skips XML extraction: the edge's fast path."""
    d = cb.data
    mtype = cb.message_type
    from_user, to_user = _str(d, "fromUser"), _str(d, "toUser")
    # the account's own message whatever `self` says: a recall of one's own message comes with self: false
    is_self = _bool(d.get("self", d.get("sel", False))) or from_user == cb.wc_id
    group_id = _str(d, "fromGroup")
    if not group_id and mtype.kind is Kind.GROUP_EVENT:
        group_id = _str(d, "userName") if _str(d, "userName").endswith("@chatroom") else ""
    if not group_id and from_user.endswith("@chatroom"):
        group_id = from_user  # some pushes put the group in fromUser
    is_group = bool(group_id) or mtype.group

    content = _str(d, "content")
    prefixed_sender, content = split_sender_prefix(content) if is_group else (None, content)
    sender = from_user if from_user and from_user != group_id else (prefixed_sender or from_user)
    if is_self:
        sender = cb.wc_id

    if mtype.kind is Kind.ACCOUNT_EVENT or mtype.kind is Kind.TEST:
        conversation = ""
    elif is_group:
        conversation = group_id
    else:
        conversation = (to_user if is_self else from_user) or _str(d, "userName")

    is_xml = looks_like_xml(content)
    xml = extract(content) if is_xml and with_xml else XmlFields()
    if mtype.name == "quote":
        text = _str(d, "title") or xml.title
    else:
        text = "" if is_xml else content

    new_msg_id = as_u64(d.get("newMsgId"), "newMsgId")
    return ArchiveMessage(
        account=cb.wc_id,
        platform_account=cb.account,
        w_id=_str(d, "wId"),
        kind=mtype.kind.value,
        type_code=mtype.code,
        type_name=mtype.name,
        native_type=_small_int(d.get("msgType")),
        is_group=is_group,
        conversation=conversation,
        sender=sender,
        receiver=to_user,
        is_self=is_self,
        new_msg_id=new_msg_id,
        msg_id=as_u64(d.get("msgId"), "msgId"),
        identity=str(new_msg_id) if new_msg_id is not None else _hash_identity(cb),
        time_ms=_time_ms(d.get("timestamp", d.get("createTime"))),
        text=text,
        title="" if mtype.name == "quote" else xml.title,
        description=xml.description,
        url=xml.url,
        file_name=xml.file_name,
        quoted_new_msg_id=xml.quoted_new_msg_id,
        quoted_text=xml.quoted_text,
        recalled_new_msg_id=xml.recalled_new_msg_id,
        at_list=_at_list(d.get("atlist", d.get("atList"))),
        extra=xml.extra,
        raw=cb.raw,
    )


def _hash_identity(cb: Callback) -> str:
    """Without `wId`: it changes on every re-login, and history re-pushed after one must keep its identity."""
    stable = {k: v for k, v in cb.data.items() if k != "wId"}
    canonical = orjson.dumps(stable, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    digest = hashlib.blake2b(b"\0".join([cb.wc_id.encode(), cb.message_type.code.encode(), canonical]), digest_size=8)
    return "h:" + digest.hexdigest()


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(f"data.{key} must be a string, got {type(value).__name__}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1", "true", "false", "True", "False", None):
        return value in (1, "1", "true", "True")
    raise PayloadError("data.self must be a boolean")


def _small_int(value: Any) -> int | None:
    """WeChat's own msgType: informative, so what is not a 32-bit integer is None rather than an error."""
    if isinstance(value, str):
        text = value.strip(ASCII_SPACE)
        value = int(text) if len(text) <= 11 and ASCII_INT.fullmatch(text) else None
    elif isinstance(value, float):
        value = int(value) if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool) and value in _INT32:
        return value
    return None


def _time_ms(value: Any) -> int | None:
    """Seconds or milliseconds (the docs say seconds; some pushes and SDKs use milliseconds). A string must be
    an ASCII decimal; a value that is not finite or does not fit the Int64 column is an error, not a guess."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    number: int | float
    if isinstance(value, str):
        text = value.strip(ASCII_SPACE)
        if len(text) > 40 or not _DECIMAL.fullmatch(text):
            raise PayloadError(f"data.timestamp must be a number, got {echo(value)}")
        number = int(text) if ASCII_INT.fullmatch(text) else float(text)
    elif isinstance(value, (int, float)):
        number = value
    else:
        raise PayloadError(f"data.timestamp must be a number, got {json_type(value)}")
    if isinstance(number, float) and not math.isfinite(number):
        raise PayloadError("data.timestamp must be a finite number")
    if number <= 0:
        return None
    ms = int(number) if number >= _MS_THRESHOLD else int(number * 1000)
    if ms > _MAX_INT64:
        raise PayloadError("data.timestamp is out of range")
    return ms


def _at_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v) for v in value if v]
    raise PayloadError("data.atlist must be a list of wxids")
