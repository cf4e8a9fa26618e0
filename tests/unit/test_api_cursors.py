"""Cursors are opaque but checked: a cursor of one list is refused by another, and nothing that does not decode
to the key a list sorts by gets into a query."""

from __future__ import annotations

import base64

import pytest

from api.cursors import InvalidCursor, decode_cursor, decode_time_key, encode_cursor


def test_a_cursor_gives_back_the_key_it_was_made_of() -> None:
    cursor = encode_cursor("messages", (1583760173240, "6982760926774476952"))
    assert "=" not in cursor and decode_time_key(cursor, "messages") == (1583760173240, "6982760926774476952")
    assert decode_cursor(encode_cursor("x", ("群", 0)), "x", (str, int)) == ("群", 0)


@pytest.mark.parametrize("cursor", [
    "", "not base64 at all!", "AAAA", base64.urlsafe_b64encode(b'{"a": 1}').decode(),
    encode_cursor("conversations", (1, "a")), encode_cursor("messages", ("1", "a")),
    encode_cursor("messages", (1, "a", "b")), base64.urlsafe_b64encode(b'["messages",100000000000000000000000,"a"]').decode(), "x" * 5000,
])
def test_anything_else_is_refused_with_400(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        decode_time_key(cursor, "messages")
    assert refused.value.http_status == 400 and refused.value.error == "invalid_cursor" and str(refused.value)
