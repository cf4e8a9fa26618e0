"""E云 API request limits and response models (../shared/seeds/000_…, reference §7).

Every response is `{"code": "1000"|"1001", "message": …, "data": …}` with `code` a string; "1000" is
success. The models keep the documented fields and tolerate extra ones (the API adds fields freely).
The same models serialize the fake server's answers, so client and fake cannot disagree on a shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

SUCCESS = "1000"
FAILURE = "1001"
GET_CONTACT_MAX_IDS = 20            # "多个使用英文逗号分隔", at most 20 per call
GET_CONTACT_PACING_S = (0.3, 0.8)   # "每次调用请随机间隔300ms-800ms"

T = TypeVar("T")


def _from(cls: type[T], raw: dict[str, Any], aliases: dict[str, str] | None = None) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in raw.items() if k in known}
    for alias, name in (aliases or {}).items():
        if name not in values and alias in raw:
            values[name] = raw[alias]
    return cls(**values)


@dataclass(frozen=True)
class Contact:
    """getContact's answer for one friend, stranger or group (`…@chatroom`)."""

    userName: str
    nickName: str = ""
    remark: str = ""
    signature: str = ""
    sex: int = 0
    aliasName: str = ""
    country: str = ""
    province: str = ""
    city: str = ""
    bigHead: str = ""
    smallHead: str = ""
    labelList: str = ""
    v1: str = ""

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Contact:
        return _from(cls, raw)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AddressList:
    friends: list[str] = field(default_factory=list)
    chatrooms: list[str] = field(default_factory=list)
    ghs: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> AddressList:
        # the documented sample answers [""] for an empty list
        return cls(**{f.name: [x for x in (raw.get(f.name) or []) if x] for f in fields(cls)})


@dataclass(frozen=True)
class LoginWx:
    wcId: str
    wId: str

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> LoginWx:
        return _from(cls, raw)


@dataclass(frozen=True)
class SentMessage:
    type: int
    msgId: int
    newMsgId: int
    createTime: int
    wcId: str

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> SentMessage:
        return _from(cls, raw)


@dataclass(frozen=True)
class ChatRoomMember:
    userName: str
    nickName: str = ""
    displayName: str = ""
    inviterUserName: str = ""
    isManage: bool = False
    chatRoomId: str = ""
    chatRoomOwner: str = ""
    memberCount: int = 0
    bigHeadImgUrl: str | None = None
    smallHeadImgUrl: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ChatRoomMember:
        return _from(cls, raw, aliases={"nikeName": "nickName"})  # the old doc's spelling


@dataclass(frozen=True)
class ChatRoomInfo:
    chatRoomId: str
    userName: str = ""
    nickName: str = ""
    chatRoomOwner: str = ""
    memberCount: int = 0
    smallHeadImgUrl: str | None = None
    bigHeadImgUrl: str | None = None
    v1: str = ""
    chatRoomMembers: list[ChatRoomMember] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ChatRoomInfo:
        info = _from(cls, {k: v for k, v in raw.items() if k != "chatRoomMembers"})
        members = [ChatRoomMember.parse(m) for m in raw.get("chatRoomMembers") or []]
        return ChatRoomInfo(**{**asdict(info), "chatRoomMembers": members})
