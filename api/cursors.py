"""Opaque cursors for keyset paging: the sort key of the last row a page showed, so the next page starts right after
it whatever was added meanwhile (an OFFSET would shift by every row added above it and repeat or skip rows).

A cursor is url-safe base64 of a JSON array: the list it belongs to, then the key's values. It is opaque to callers
but not secret (it holds only values of rows they were shown); a cursor of another list, or one that does not decode,
is refused with 400 rather than guessed at.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from api.errors import ApiError

__all__ = ["InvalidCursor", "MAX_CURSOR_CHARS", "decode_cursor", "decode_time_key", "encode_cursor"]

MAX_CURSOR_CHARS = 2048
Key = tuple[int | str, ...]


class InvalidCursor(ApiError):
    error = "invalid_cursor"


def encode_cursor(kind: str, key: Key) -> str:
    """The cursor after a row whose sort key is `key`, in the list `kind`."""
    return base64.urlsafe_b64encode(orjson.dumps([kind, *key])).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, types: tuple[type[int] | type[str], ...]) -> Key:
    """The key a cursor of list `kind` holds, its values of `types`; InvalidCursor for anything else."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("the cursor is too long: pass back a cursor exactly as a page gave it")
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidCursor("the cursor does not decode: pass back a cursor exactly as a page gave it") from None
    if not isinstance(value, list) or not value or value[0] != kind:
        raise InvalidCursor(f"the cursor is not one of this list ({kind}): use a cursor this list gave")
    key = value[1:]
    if len(key) != len(types) or not all(type(v) is t for v, t in zip(key, types)):
        raise InvalidCursor(f"the cursor of {kind} does not hold the key it should")
    if any(isinstance(v, int) and not -2**63 <= v < 2**63 for v in key):
        raise InvalidCursor(f"the cursor of {kind} holds a number out of range")
    return tuple(key)


def decode_time_key(cursor: str, kind: str) -> tuple[int, str]:
    """The (time in ms, id) key every list here sorts by, from a cursor of list `kind`."""
    time_ms, key_id = decode_cursor(cursor, kind, (int, str))
    assert isinstance(time_ms, int) and isinstance(key_id, str)  # decode_cursor checked the types
    return time_ms, key_id
