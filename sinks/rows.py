"""Kafka records to ClickHouse rows, one converter per topic: the columns each table is written with.

The worker's messages, events and hits go in as JSON lines that ClickHouse parses; a bad one is refused by
ClickHouse (a parse error or the table's CHECK constraint) and found by the sink's split. Raw callbacks,
contacts, dead letters and the read side's audit records and principals are shaped into rows here; a record
that cannot become a row raises RowError with the reason. Either way the record goes to the dead-letter topic
instead of stopping the sink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from schemas.access import AuditRecord, Principal
from wxarchive.errors import WxarchiveError

__all__ = ["AUDIT_COLUMNS", "FEEDS", "MESSAGE_FIELDS", "PRINCIPAL_COLUMNS", "RAW_COLUMNS", "RowError", "audit_row",
           "contact_row", "principal_row", "raw_row"]


class RowError(WxarchiveError):
    """A record that cannot become a row; it goes to the dead-letter topic with this reason."""

    http_status = 400


def _ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value or 0) / 1000, tz=UTC)


def _doc(record: ConsumerRecord) -> dict[str, Any]:
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise RowError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RowError("not a JSON object")
    return doc


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: bytes(v).decode("utf-8", "replace") for k, v in record.headers or ()}


def raw_row(record: ConsumerRecord) -> list[Any]:
    headers = _headers(record)
    received = headers.get("wx-received-at") or record.timestamp
    return [record.topic, record.partition, record.offset, _ms(received), record.key or b"", record.value, headers]


# The worker's records are JSON objects whose keys are these columns (EPHEMERAL ones such as time_ms feed
# defaults in the table); ClickHouse parses them itself (JSONEachRow), far faster than Python could.
MESSAGE_FIELDS = ("account", "identity", "new_msg_id", "msg_id", "platform_account", "w_id", "type_code", "type_name",
                  "native_type", "is_group", "conversation", "conversation_name", "sender", "sender_name",
                  "sender_remark", "sender_alias", "receiver", "is_self", "time_ms", "text", "title", "description",
                  "url", "file_name", "quoted_new_msg_id", "quoted_text", "recalled_new_msg_id", "at_list", "extra",
                  "enriched", "moderation_hits", "received_ms", "source")
EVENT_FIELDS = ("account", "identity", "kind", "type_code", "type_name", "conversation", "sender", "time_ms", "text",
                "extra", "received_ms", "raw")
HIT_FIELDS = ("account", "conversation", "is_group", "sender", "identity", "new_msg_id", "time_ms", "word", "category",
              "severity", "mode", "field", "start", "end", "matched", "snippet")


CONTACT_COLUMNS = ("account", "wxid", "nickname", "remark", "alias", "signature", "sex", "country", "province", "city",
                   "big_head", "small_head", "labels", "fetched_at", "snapshot")


def contact_row(record: ConsumerRecord) -> list[Any] | None:
    if record.value is None:
        return None  # a tombstone on the compacted topic: history keeps what it had
    d = _doc(record)
    try:
        return [str(d["account"]), str(d["userName"]), d.get("nickName") or "", d.get("remark") or "",
                d.get("aliasName") or "", d.get("signature") or "", int(d.get("sex") or 0), d.get("country") or "",
                d.get("province") or "", d.get("city") or "", d.get("bigHead") or "", d.get("smallHead") or "",
                d.get("labelList") or "", _ms(d.get("fetched_ms")), record.value.decode("utf-8", "replace")]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RowError(f"contact record missing or bad field: {exc!r}") from None


RAW_COLUMNS = ("topic", "partition", "offset", "received_at", "key", "body", "headers")
DEAD_LETTER_COLUMNS = ("partition", "offset", "received_at", "stage", "reason", "source", "key", "body", "headers")


def dead_letter_row(record: ConsumerRecord) -> list[Any]:
    headers = _headers(record)
    received = headers.get("wx-received-at") or record.timestamp
    return [record.partition, record.offset, _ms(received), headers.get("wx-stage", ""), headers.get("wx-reason", ""),
            headers.get("wx-source", ""), record.key or b"", record.value or b"", headers]


AUDIT_COLUMNS = ("id", "time", "principal", "token_id", "role", "action", "parameters", "result_count", "status",
                 "request_id", "client")


def audit_row(record: ConsumerRecord) -> list[Any]:
    """An audit record as a row; its parameters as JSON text with sorted keys (ClickHouse's JSONExtract reads it)."""
    try:
        a = AuditRecord.from_json(record.value or b"")
    except ValueError as exc:
        raise RowError(f"audit record: {exc}") from None
    return [a.id, _ms(a.time), a.principal, a.token_id, a.role, a.action,
            orjson.dumps(a.parameters, option=orjson.OPT_SORT_KEYS).decode(), a.result_count, a.status, a.request_id,
            a.client]


PRINCIPAL_COLUMNS = ("token_id", "name", "role", "token_sha256", "created_at", "created_by", "revoked_at", "version")


def principal_row(record: ConsumerRecord) -> list[Any] | None:
    if record.value is None:
        return None  # a tombstone on the compacted topic: the table keeps the token's last state
    try:
        p = Principal.from_json(record.value)
    except ValueError as exc:
        raise RowError(f"principal record: {exc}") from None
    return [p.token_id, p.name, p.role, p.token_sha256, _ms(p.created_at), p.created_by,
            None if p.revoked_at is None else _ms(p.revoked_at), p.version]


@dataclass(frozen=True)
class TableFeed:
    """Which table a topic fills and with which columns: record values as JSONEachRow lines (`row` None), or rows
    built here (`row`) where the table's shape is not the record's."""

    suffix: str
    table: str
    columns: tuple[str, ...]
    row: Callable[[ConsumerRecord], list[Any] | None] | None = None


FEEDS = (
    TableFeed("raw", "raw_callbacks", RAW_COLUMNS, raw_row),
    TableFeed("messages", "messages", MESSAGE_FIELDS),
    TableFeed("events", "account_events", EVENT_FIELDS),
    TableFeed("moderation", "moderation_hits", HIT_FIELDS),
    TableFeed("contacts", "contacts", CONTACT_COLUMNS, contact_row),
    TableFeed("dlq", "dead_letters", DEAD_LETTER_COLUMNS, dead_letter_row),
    TableFeed("audit", "audit_log", AUDIT_COLUMNS, audit_row),
    TableFeed("principals", "principals", PRINCIPAL_COLUMNS, principal_row),
)
