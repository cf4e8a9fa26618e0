"""E云 API request limits and response models (../shared/seeds/000_…, reference §7).

Every response is `{"code": "1000"|"1001", "message": …, "data": …}` with `code` a string; "1000" is
success. The models keep the documented fields and tolerate extra ones (the API adds fields freely).
The same models serialize the fake server's answers, so client and fake cannot disagree on a shape.
"""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

__all__ = ["AddressList", "ChatRoomInfo", "ChatRoomMember", "Contact", "FAILURE", "GET_CONTACT_MAX_IDS",
           "GET_CONTACT_PACING_S", "LoginWx", "SUCCESS", "SentMessage"]

SUCCESS = "1000"
FAILURE = "1001"
GET_CONTACT_MAX_IDS = 20            # "多个使用英文逗号分隔", at most 20 per call
GET_CONTACT_PACING_S = (0.3, 0.8)   # "每次调用请随机间隔300ms-800ms"

T = TypeVar("T", bound="WireModel")


class WireModel:
    """A response object: documented fields by their wire names, unknown fields ignored."""

    ALIASES: ClassVar[dict[str, str]] = {}
    # every subclass is a dataclass: this tells the type checker so (an annotation only, no attribute)
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def parse(cls: type[T], raw: dict[str, Any]) -> T:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        for alias, name in cls.ALIASES.items():
            if name not in values and alias in raw:
                values[name] = raw[alias]
        return cls(**values)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Contact(WireModel):
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


@dataclass(frozen=True)
class AddressList(WireModel):
    friends: list[str] = field(default_factory=list)
    chatrooms: list[str] = field(default_factory=list)
    ghs: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> AddressList:
        # the documented sample answers [""] for an empty list
        return cls(**{f.name: [x for x in (raw.get(f.name) or []) if x] for f in fields(cls)})


@dataclass(frozen=True)
class LoginWx(WireModel):
    wcId: str
    wId: str


@dataclass(frozen=True)
class SentMessage(WireModel):
    type: int
    msgId: int
    newMsgId: int
    createTime: int
    wcId: str


@dataclass(frozen=True)
class ChatRoomMember(WireModel):
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

    ALIASES: ClassVar[dict[str, str]] = {"nikeName": "nickName"}  # the old doc's spelling


@dataclass(frozen=True)
class ChatRoomInfo(WireModel):
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
        info = super().parse({k: v for k, v in raw.items() if k != "chatRoomMembers"})
        members = [ChatRoomMember.parse(m) for m in raw.get("chatRoomMembers") or []]
        return ChatRoomInfo(**{**asdict(info), "chatRoomMembers": members})
