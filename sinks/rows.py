"""Kafka records to ClickHouse rows, one converter per topic: the columns each table is written with.

A record that cannot become a row (not JSON, a field of the wrong type) raises RowError with the reason;
the sink sends it to the dead-letter topic instead of stopping (issue 6: a poison record is set aside).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from schemas.callback import PayloadError, as_u64


class RowError(Exception):
    pass


def _ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value or 0) / 1000, tz=timezone.utc)


def _u64(doc: dict[str, Any], field: str) -> int | None:
    try:
        return as_u64(doc.get(field), field)
    except PayloadError as exc:
        raise RowError(str(exc)) from None


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
    received = _headers(record).get("wx-received-at") or record.timestamp
    return [record.topic, record.partition, record.offset, _ms(received), record.key or b"", record.value,
            _headers(record)]


MESSAGE_COLUMNS = ("account", "identity", "new_msg_id", "msg_id", "platform_account", "w_id", "type_code", "type_name",
                   "native_type", "is_group", "conversation", "conversation_name", "sender", "sender_name",
                   "sender_remark", "sender_alias", "receiver", "is_self", "time", "text", "title", "description", "url",
                   "file_name", "quoted_new_msg_id", "quoted_text", "recalled_new_msg_id", "at_list", "extra",
                   "enriched", "moderation_hits", "received_at", "source_partition", "source_offset")


def message_row(record: ConsumerRecord) -> list[Any]:
    d = _doc(record)
    try:
        source = d.get("source") or {}
        return [str(d["account"]), str(d["identity"]), _u64(d, "new_msg_id"), _u64(d, "msg_id"),
                d.get("platform_account") or "", d.get("w_id") or "", d["type_code"], d["type_name"],
                d.get("native_type"), bool(d["is_group"]), d.get("conversation") or "",
                d.get("conversation_name") or "", d.get("sender") or "", d.get("sender_name") or "",
                d.get("sender_remark") or "", d.get("sender_alias") or "", d.get("receiver") or "",
                bool(d.get("is_self")), _ms(d.get("time_ms") or d.get("received_ms")), d.get("text") or "",
                d.get("title") or "", d.get("description") or "", d.get("url") or "", d.get("file_name") or "",
                _u64(d, "quoted_new_msg_id"), d.get("quoted_text") or "",
                _u64(d, "recalled_new_msg_id"), [str(x) for x in d.get("at_list") or ()],
                {str(k): str(v) for k, v in (d.get("extra") or {}).items()}, 1 if d.get("enriched") else 0,
                min(int(d.get("moderation_hits") or 0), 65535), _ms(d.get("received_ms")),
                int(source.get("partition", 0)), int(source.get("offset", 0))]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RowError(f"message record missing or bad field: {exc!r}") from None


EVENT_COLUMNS = ("account", "identity", "kind", "type_code", "type_name", "conversation", "sender", "time", "text",
                 "extra", "received_at", "body")


def event_row(record: ConsumerRecord) -> list[Any]:
    d = _doc(record)
    try:
        return [str(d["account"]), str(d["identity"]), d["kind"], d["type_code"], d["type_name"],
                d.get("conversation") or "", d.get("sender") or "", _ms(d.get("time_ms") or d.get("received_ms")),
                d.get("text") or "", {str(k): str(v) for k, v in (d.get("extra") or {}).items()},
                _ms(d.get("received_ms")), d.get("raw") or ""]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RowError(f"event record missing or bad field: {exc!r}") from None


HIT_COLUMNS = ("account", "conversation", "is_group", "sender", "identity", "new_msg_id", "time", "word", "category",
               "severity", "mode", "field", "start", "end", "matched", "snippet")


def hit_row(record: ConsumerRecord) -> list[Any]:
    d = _doc(record)
    try:
        return [str(d["account"]), d.get("conversation") or "", bool(d.get("is_group")), d.get("sender") or "",
                str(d["identity"]), _u64(d, "new_msg_id"), _ms(d.get("time_ms")), d["word"],
                d.get("category") or "", str(d.get("severity") or ""), d.get("mode") or "", d.get("field") or "",
                int(d["start"]), int(d["end"]), d.get("matched") or "", d.get("snippet") or ""]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RowError(f"moderation record missing or bad field: {exc!r}") from None


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


@dataclass(frozen=True)
class TableFeed:
    """Which table a topic fills, with which columns, through which converter."""

    suffix: str
    table: str
    columns: tuple[str, ...]
    row: Callable[[ConsumerRecord], list[Any] | None]


FEEDS = (
    TableFeed("raw", "raw_callbacks", RAW_COLUMNS, raw_row),
    TableFeed("messages", "messages", MESSAGE_COLUMNS, message_row),
    TableFeed("events", "account_events", EVENT_COLUMNS, event_row),
    TableFeed("moderation", "moderation_hits", HIT_COLUMNS, hit_row),
    TableFeed("contacts", "contacts", CONTACT_COLUMNS, contact_row),
    TableFeed("dlq", "dead_letters", DEAD_LETTER_COLUMNS, dead_letter_row),
)
