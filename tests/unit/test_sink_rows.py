"""Kafka records to ClickHouse rows: what the sink does with records it cannot convert, and what it retries."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from sinks.rows import FEEDS, RowError, contact_row, hit_row, message_row
from sinks.sink import refused_for_data


def record(value: bytes | None, topic: str = "p.messages", headers: tuple = ()) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(topic, 0, 7, 1_700_000_000_000, 0, b"k", value, None, len(value or b""), 0, list(headers))


GOOD_MESSAGE = (b'{"account":"wxid_a","identity":"5","new_msg_id":5,"type_code":"60001","type_name":"text",'
                b'"is_group":false,"time_ms":1700000000000,"text":"hi","enriched":true,"received_ms":1700000000001,'
                b'"source":{"partition":1,"offset":9}}')


def test_a_message_record_becomes_a_row_with_every_column() -> None:
    feed = next(f for f in FEEDS if f.table == "messages")
    row = message_row(record(GOOD_MESSAGE))
    assert len(row) == len(feed.columns)
    values = dict(zip(feed.columns, row))
    assert (values["account"], values["new_msg_id"], values["enriched"], values["source_offset"]) == ("wxid_a", 5, 1, 9)


@pytest.mark.parametrize("value, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"identity":"5"}', "missing or bad field"),
    (GOOD_MESSAGE.replace(b'"new_msg_id":5', b'"new_msg_id":5.5'), "new_msg_id is not an exact integer"),
    (GOOD_MESSAGE.replace(b'"new_msg_id":5', b'"new_msg_id":"x"'), "new_msg_id must be an integer"),
])
def test_a_message_record_that_cannot_become_a_row_says_why(value: bytes, reason: str) -> None:
    with pytest.raises(RowError, match=reason):
        message_row(record(value))


def test_hits_and_contacts_refuse_missing_fields_and_tombstones_are_skipped() -> None:
    with pytest.raises(RowError, match="moderation record"):
        hit_row(record(b'{"account":"a","identity":"1"}'))
    with pytest.raises(RowError, match="contact record"):
        contact_row(record(b'{"account":"a"}', topic="p.contacts"))
    assert contact_row(record(None, topic="p.contacts")) is None


def test_data_refusals_are_split_out_and_outages_are_retried() -> None:
    assert refused_for_data(DataError("Unable to create native array for column `native_type`"))
    assert refused_for_data(ValueError("invalid literal for int()"))
    assert refused_for_data(DatabaseError("Code: 53. DB::Exception: Type mismatch"))
    assert not refused_for_data(DatabaseError("Code: 60. DB::Exception: Table wxarchive.messages does not exist"))
    assert not refused_for_data(DatabaseError("Code: 252. DB::Exception: Too many parts"))
    assert not refused_for_data(OperationalError("Error HTTPConnectionPool: connection refused"))
