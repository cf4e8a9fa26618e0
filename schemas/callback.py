"""Decoding an E云 callback body into its envelope, or a PayloadError with a reason a sender can act on.

Decoding is orjson's, with one fallback: WeChat text can carry a lone UTF-16 surrogate escape
("\\ud800"), which orjson rejects and the stdlib parser accepts. Such a body is still a message to
archive, so it is decoded by the stdlib and its lone surrogates become U+FFFD in the decoded values;
the raw bytes are kept exactly as received.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.message_types import Kind, MessageType, lookup

MAX_U64 = 2**64 - 1
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_DATA_OPTIONAL = {Kind.TEST, Kind.ACCOUNT_EVENT}


class PayloadError(ValueError):
    """The body is not a callback we can archive. `reason` is short, specific and safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Callback:
    """The envelope: whose account, which type, the data object, and the bytes as received."""

    wc_id: str
    account: str
    message_type: MessageType
    data: dict[str, Any]
    raw: bytes


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "surrogate" not in str(exc):
            raise PayloadError(f"body is not JSON: {exc}") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not valid UTF-8") from None
    try:
        return _replace_lone_surrogates(json.loads(text))
    except json.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


def parse_callback(body: bytes) -> Callback:
    """The envelope of `body`. Unknown types and unknown fields are kept; only what cannot be archived fails."""
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise PayloadError(f"body must be a JSON object, got {_json_type(doc)}")
    wc_id = doc.get("wcId")
    if wc_id is None or wc_id == "":
        raise PayloadError("missing wcId")
    if not isinstance(wc_id, str):
        raise PayloadError(f"wcId must be a string, got {_json_type(wc_id)}")
    code = doc.get("messageType")
    if code is None or code == "":
        raise PayloadError("missing messageType")
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        raise PayloadError(f"messageType must be a string, got {_json_type(code)}")
    message_type = lookup(str(code))
    data = doc.get("data")
    if data is None:
        if message_type.kind not in _DATA_OPTIONAL:
            raise PayloadError("missing data")
        data = {}
    elif not isinstance(data, dict):
        raise PayloadError(f"data must be an object, got {_json_type(data)}")
    account = doc.get("account")
    if account is not None and (isinstance(account, bool) or not isinstance(account, (str, int))):
        raise PayloadError(f"account must be a string, got {_json_type(account)}")
    return Callback(wc_id=wc_id, account="" if account is None else str(account), message_type=message_type,
                    data=data, raw=body)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def as_u64(value: Any, field: str) -> int | None:
    """A 64-bit id, exactly. Integers and digit strings are accepted; a float has already lost digits
    (orjson turns integers beyond 2^64-1 into floats), so it is an error, never a rounded id.
    A negative value is a signed-64-bit rendering of the same id (Java SDKs) and is mapped back."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise PayloadError(f"{field} must be an integer, got a boolean")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"-?\d+", text):
            raise PayloadError(f"{field} must be an integer, got {value[:40]!r}")
        value = int(text)
    if isinstance(value, float):
        raise PayloadError(f"{field} is not an exact integer (a float, or beyond 64 bits); send it as an integer or a string")
    if not isinstance(value, int):
        raise PayloadError(f"{field} must be an integer, got {_json_type(value)}")
    if -(2**63) <= value < 0:
        value += 2**64
    if not 0 <= value <= MAX_U64:
        raise PayloadError(f"{field} is out of the 64-bit range")
    return value
