"""Kafka records to ClickHouse rows: what the sink does with records it cannot convert, and what it retries."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from sinks.rows import FEEDS, RAW_COLUMNS, RowError, contact_row, raw_row
from sinks.sink import refused_for_data


def record(value: bytes | None, topic: str = "p.messages", headers: tuple = ()) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(topic, 0, 7, 1_700_000_000_000, 0, b"k", value, None, len(value or b""), 0, list(headers))


def test_raw_callbacks_keep_the_body_and_the_edge_headers() -> None:
    row = raw_row(record(b'{"wcId":"a"}', topic="p.raw", headers=(("wx-received-at", b"1700000000123"),)))
    values = dict(zip(RAW_COLUMNS, row))
    assert values["body"] == b'{"wcId":"a"}' and values["offset"] == 7
    assert values["received_at"].timestamp() == 1700000000.123 and values["headers"] == {"wx-received-at": "1700000000123"}


def test_worker_records_go_in_as_json_lines_whose_keys_are_columns() -> None:
    """Every key the worker writes that the table stores is in the feed's column list."""
    feeds = {f.table: f for f in FEEDS}
    assert feeds["messages"].row is None and {"account", "identity", "time_ms", "source", "enriched"} <= set(
        feeds["messages"].columns)
    assert feeds["account_events"].row is None and "raw" in feeds["account_events"].columns


@pytest.mark.parametrize("value, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"account":"a"}', "contact record missing or bad field"),
    (b'{"account":"a","userName":"b","sex":"x"}', "contact record missing or bad field"),
])
def test_a_contact_record_that_cannot_become_a_row_says_why(value: bytes, reason: str) -> None:
    with pytest.raises(RowError, match=reason):
        contact_row(record(value, topic="p.contacts"))


def test_tombstones_on_the_contacts_topic_are_skipped() -> None:
    with pytest.raises(RowError, match="contact record"):
        contact_row(record(b'{"account":"a"}', topic="p.contacts"))
    assert contact_row(record(None, topic="p.contacts")) is None


def test_data_refusals_are_split_out_and_outages_are_retried() -> None:
    assert refused_for_data(DataError("Unable to create native array for column `native_type`"))
    assert refused_for_data(ValueError("invalid literal for int()"))
    # as clickhouse-connect raises them: ClickHouse's code on the error (from the HTTP header, or from chdb)
    assert refused_for_data(DatabaseError("Code: 53. DB::Exception: Type mismatch", code=53))
    assert not refused_for_data(DatabaseError("Code: 60. DB::Exception: Table wxarchive.messages does not exist",
                                              code=60))
    assert not refused_for_data(DatabaseError("Code: 252. DB::Exception: Too many parts", code=252))
    assert not refused_for_data(OperationalError("Error HTTPConnectionPool: connection refused"))
