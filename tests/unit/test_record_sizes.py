"""The size story's arithmetic: what the worker writes for the largest body the edge accepts fits the topics
it writes, whatever the body is made of (a body of escapes grows most when the worker re-serializes it)."""

from __future__ import annotations

import orjson
import pytest

from moderation.matcher import KeywordMatcher
from streams.enrichment import Names
from streams.processing import RawRecord, finish_batch, prepare_batch
from wxarchive.config import Settings
from wxarchive.topics import max_derived_record_bytes, max_record_bytes, record_bytes

SETTINGS = Settings()
HEAD = orjson.dumps({"wcId": "wxid_a", "messageType": "60001",
                     "data": {"fromUser": "wxid_peer", "toUser": "wxid_a", "newMsgId": 7, "timestamp": 1_700_000_000,
                              "content": ""}})


@pytest.mark.parametrize("unit", [b"x", "中".encode(), b"\\\\", b'\\"', b"\\u0001", b"\\ud83d\\ude00"])
def test_the_worker_record_of_the_largest_body_fits_its_topic(unit: bytes) -> None:
    body = HEAD[:-3] + unit * ((SETTINGS.edge_max_body_bytes - len(HEAD)) // len(unit)) + b'"}}'
    assert len(body) <= SETTINGS.edge_max_body_bytes
    prepared = prepare_batch([RawRecord(b"k", body, (("wx-received-at", b"1"),), 0, 0)], lambda *_: False)
    out = finish_batch(prepared, [Names()], KeywordMatcher([]))
    ((key, value),) = out.messages
    assert record_bytes(key, value, ()) <= max_derived_record_bytes(SETTINGS)
    assert record_bytes(b"k" * 200, body, [("wx-remote", b"x" * 256)] * 8) <= max_record_bytes(SETTINGS)
