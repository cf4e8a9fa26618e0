"""The native API's shapes (/api/v1): what each route returns, typed, so /openapi.json documents every field.

Conventions: times are Unix milliseconds (`*_ms`), as in the archive's records; WeChat's 64-bit message ids are
strings (a JSON number past 2^53 loses digits in a browser); names "as archived" are what the callbacks carried at
the time, names "now" are the latest contact snapshot the worker took (getContact). Every error is an `ErrorBody`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from access.roles import Role

__all__ = ["Account", "AccountList", "AuditEntry", "AuditPage", "ContactNow", "Conversation", "ConversationPage",
           "ErrorBody", "LastMessage", "Message", "MessageEvidence", "NewToken", "RawCallback", "SqlColumn",
           "SqlRequest", "SqlResult", "TokenInfo", "TokenList", "TokenRequest", "Transcript"]


class ErrorBody(BaseModel):
    error: str = Field(description="A short name of the failure: unauthorized, forbidden, not_found, …")
    reason: str = Field(description="What went wrong and what to do about it")
    request_id: str | None = Field(None, description="The request's id (also in X-Request-Id and its audit record)")


class Account(BaseModel):
    account: str = Field(description="The archived WeChat account (wcId)")
    conversations: int
    messages: int
    last_time_ms: int = Field(description="When its latest message was sent")


class AccountList(BaseModel):
    accounts: list[Account]


class LastMessage(BaseModel):
    identity: str = Field(description="newMsgId as text (or h:… for callbacks without one)")
    sender: str
    type: str = Field(description="text, image, voice, file, link, recall, …")
    text: str
    is_self: bool
    time_ms: int


class ContactNow(BaseModel):
    nickname: str
    remark: str = Field(description="The account's remark for the contact")
    fetched_at_ms: int = Field(description="When the snapshot was taken")


class Conversation(BaseModel):
    conversation: str = Field(description="The group id (…@chatroom) or, in a private chat, the peer's wxid")
    is_group: bool
    name: str = Field(description="The name to show: the remark or nickname now, else the name as archived")
    name_archived: str = Field(description="The latest name the conversation's messages carried")
    name_now: ContactNow | None = Field(description="The latest contact snapshot, if the worker took one")
    message_count: int
    last_message: LastMessage


class ConversationPage(BaseModel):
    conversations: list[Conversation] = Field(description="Newest activity first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class Message(BaseModel):
    account: str
    identity: str
    new_msg_id: str | None
    msg_id: str | None
    type_code: str = Field(description="E云's messageType, e.g. 80001")
    type_name: str
    native_type: int | None = Field(description="WeChat's own msgType")
    is_group: bool
    conversation: str
    conversation_name: str = Field(description="As archived")
    sender: str
    sender_name: str = Field(description="As archived")
    sender_remark: str
    sender_alias: str
    receiver: str
    is_self: bool
    time_ms: int
    text: str
    title: str
    description: str
    url: str
    file_name: str
    quoted_new_msg_id: str | None
    quoted_text: str
    recalled_new_msg_id: str | None = Field(description="On a recall: the message it recalls")
    recalled: bool = Field(description="This message was recalled by its sender (it is kept)")
    at_list: list[str]
    extra: dict[str, str]
    enriched: bool = Field(description="The names came from getContact")
    moderation_hits: int
    received_at_ms: int
    archived_at_ms: int
    cursor: str = Field(description="This message's place in its transcript: `before`/`after` of the transcript")


class Transcript(BaseModel):
    messages: list[Message] = Field(description="Oldest first")
    before_cursor: str | None = Field(description="Pass as `before` for the messages older than these")
    after_cursor: str | None = Field(description="Pass as `after` for the messages newer than these")
    has_more_before: bool
    has_more_after: bool = Field(description="Newer messages existed when this page was read")


class RawCallback(BaseModel):
    topic: str
    partition: int
    offset: int
    received_at_ms: int = Field(description="When the edge received it")
    key: str
    headers: dict[str, str]
    body_base64: str = Field(description="The callback's bytes exactly as received")
    body_text: str = Field(description="The same bytes as UTF-8 text (invalid bytes replaced)")
    body_is_utf8: bool


class MessageEvidence(BaseModel):
    message: Message
    raw: RawCallback | None = Field(description="The raw callback at the message's Kafka coordinates; null if the "
                                                "sink has not written it yet")


class SqlRequest(BaseModel):
    query: str = Field(min_length=1, max_length=1024 * 1024,
                       description="One read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS), no FORMAT")


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlResult(BaseModel):
    columns: list[SqlColumn]
    rows: list[list[Any]] = Field(description="One array per row, values as ClickHouse's JSON formats give them")
    row_count: int
    bytes: int = Field(description="Bytes of the result as ClickHouse sent it")


class AuditEntry(BaseModel):
    id: str
    time_ms: int
    principal: str
    token_id: str
    role: str
    action: str
    parameters: dict[str, Any]
    result_count: int | None
    status: int
    request_id: str
    client: str


class AuditPage(BaseModel):
    records: list[AuditEntry] = Field(description="Newest first")
    next_cursor: str | None


class TokenInfo(BaseModel):
    """A token as admins see it: never the token, never its hash."""

    token_id: str
    name: str
    role: str
    created_at_ms: int
    created_by: str
    revoked_at_ms: int | None


class TokenList(BaseModel):
    tokens: list[TokenInfo] = Field(description="Every token made, revoked ones too, oldest first")


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="Whose token: a person or a system")
    role: Role = Field(description="What the token may do (docs/access.md)")


class NewToken(TokenInfo):
    token: str = Field(description="The bearer token, shown this once: only its hash is kept")
