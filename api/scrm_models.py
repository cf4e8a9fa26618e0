"""The SCRM's shapes, field for field as seed 003 shows them (../shared/seeds/003_0786455be3ed5218.txt), so its back
end reads our answers unchanged: camelCase names in the seed's order, an integer `code` 200, `lastMsg` and
`wechatUser` as JSON-encoded strings, the group list as a bare array, getMember's body a JSON-encoded string.
Declared as models so /openapi.json documents these routes too; docs/api.md says where each value comes from.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ScrmError", "ScrmGroupConversation", "ScrmKeyword", "ScrmKeywordList", "ScrmLastMsgData",
           "ScrmLastMsgList", "ScrmMember", "ScrmMemberCount", "ScrmMemberDetail", "ScrmPrivateConversation",
           "ScrmStatus"]


class ScrmStatus(BaseModel):
    """The seed's plain answer: `{"msg":"成功","code":200}`."""

    msg: str
    code: int


class ScrmError(BaseModel):
    """A refusal on an SCRM path: the SCRM's envelope with the HTTP status as `code`, and the API's error fields."""

    msg: str
    code: int
    error: str
    reason: str
    request_id: str | None = None


class ScrmPrivateConversation(BaseModel):
    """One item of findLastMsgList (单聊) `data.lastMsgList`."""

    wechatContactId: int
    contactFlag: int
    wechatUserUin: str
    nickName: str
    remarkName: str
    contactType: int
    userName: str
    wechatUserName: str
    headImgUrl: str
    createTime: str = Field(description="The last message's time, yyyy-MM-dd HH:mm:ss (Asia/Shanghai)")
    lastMsg: str = Field(description="A JSON-encoded object, as in the seed")
    wechatUserId: int
    uin: str
    time: int = Field(description="The last message's time, Unix ms")


class ScrmLastMsgData(BaseModel):
    delData: list[ScrmPrivateConversation]
    lastMsgList: list[ScrmPrivateConversation]


class ScrmLastMsgList(BaseModel):
    msg: str
    code: int
    data: ScrmLastMsgData


class ScrmGroupConversation(BaseModel):
    """One item of findLastMsgList (群聊): the answer is a bare array of these."""

    createTime: str
    wechatContactId: int
    wechatUserId: int
    chatRoomSettings: str
    contactType: int
    uin: str
    wechatUserUin: str
    wechatUserName: str
    userName: str
    nickName: str
    remarkName: str
    contactFlag: int
    isDelete: int
    headImgUrl: str
    isSaving: None = None
    seq: str
    verifyFlag: str
    pyinitial: str
    pyquanPin: str
    time: int
    lastMsg: str


class ScrmMember(BaseModel):
    """One group member as getMember lists them (the answer is this array, JSON-encoded into a string)."""

    PYInitial: str
    PYQuanPin: str
    alias: str
    appAccountFlag: int
    attrStatus: str
    chatRoomId: int
    city: str
    displayName: str
    encryChatRoomId: str
    headImgUrl: str
    isOwner: int
    keyWord: str
    memberId: int
    memberStatus: int
    nickName: str
    province: str
    remarkName: str
    remarkPYInitial: str
    remarkPYQuanPin: str
    signature: str
    snsFlag: int
    starFriend: int
    statues: int
    uin: str
    uniFriend: int
    userName: str
    wechatContactId: int
    wechatContactUserName: str
    wechatUserUin: str


class ScrmMemberDetail(BaseModel):
    msg: str
    code: int
    data: ScrmMember | None = Field(description="Added by the archive: the member as getMember lists them")


class ScrmMemberCount(BaseModel):
    msg: str
    code: int
    data: int = Field(description="Added by the archive: the group's member count")


class ScrmKeyword(BaseModel):
    keyword: str
    category: str
    severity: int
    mode: str


class ScrmKeywordList(BaseModel):
    msg: str
    code: int
    data: list[ScrmKeyword]
