"""Decoding an E云 callback body into its envelope, or a PayloadError with a reason a sender can act on.

Every body gets one reading, whoever reads it: the edge, the worker, a replay, or any other JSON reader a
consumer of the raw topic may use. So the parse path is total (whatever the bytes, the answer is a result
or a PayloadError, never another exception, which the edge would turn into a 500 and lose the body), and
it refuses what JSON readers disagree on:

- NaN, Infinity and -Infinity are not JSON; orjson refuses them, the stdlib and others accept them.
- A repeated key among those that identify or route a callback: orjson keeps the last, many readers the
  first, so `{"wcId":"wxid_other",…,"wcId":"wxid_acctA"}` would pass acctA's secret at the edge and
  be another account to a first-key reader.
- Nesting deeper than MAX_DEPTH: past 255 levels orjson cannot re-encode `data` (the hash identity), past
  1000 less the caller's stack the stdlib cannot read the body; both are limits of a reader, not of JSON.
- Ids in anything but ASCII digits: int() reads Arabic-Indic and fullwidth digits, most readers do not.

WeChat text can carry a lone UTF-16 surrogate escape ("\\ud800"), which orjson rejects. Such a body is
still a message to archive: its lone surrogate escapes are rewritten to "\\ufffd" (same length, so error
positions hold) and orjson reads the result, so the same reader and the same limits apply to every body.
The raw bytes are kept exactly as received.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

from schemas.message_types import Kind, MessageType, lookup
from wxarchive.errors import WxarchiveError

__all__ = ["DATA_KEYS", "PayloadError", "TOP_LEVEL_KEYS", "as_u64", "parse_callback"]

MAX_U64 = 2**64 - 1
# Levels of nested objects and arrays in a body, the body itself being level 1. A callback has three; the
# limit keeps `data` within the 254 levels orjson re-encodes (the hash identity) and the stdlib's reading
# well inside its 1000-frame recursion limit, whatever the caller's stack.
MAX_DEPTH = 200
ECHO_LIMIT = 40  # characters of the input a reason may quote back
ASCII_INT = re.compile(r"-?[0-9]+")  # not \d: that (and int()) takes Arabic-Indic, fullwidth and other digits
ASCII_SPACE = " \t\r\n"
_DATA_OPTIONAL = {Kind.TEST, Kind.ACCOUNT_EVENT}

# A surrogate escape that is one: its backslash ends an odd run, for "\\\\ud800" in JSON text is an escaped
# backslash and "ud800". Group 1 is the escaped backslashes before it; group 2 the low half of a pair, which
# is kept; a lone one becomes U+FFFD. The pattern starts with a literal backslash, which the regex engine
# finds fast, and only surrogate escapes match, so other escapes cost no Python call.
_SURROGATE_ESCAPE = re.compile(rb"\\(?<!\\\\)((?:\\\\)*)u(?:[dD][89abAB][0-9a-fA-F]{2}(\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                               rb"|[dD][89a-fA-F][0-9a-fA-F]{2})")
_NON_STANDARD = re.compile(r"-?(?:NaN|Infinity)")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_NESTING_STEP = [0] * 256
_NESTING_STEP[ord("[")] = _NESTING_STEP[ord("{")] = 1
_NESTING_STEP[ord("]")] = _NESTING_STEP[ord("}")] = -1
_WHITESPACE_TO_SPACE = bytes.maketrans(b"\t\r\n", b"   ")

# The keys that identify or route a callback: each may occur once in its object.
TOP_LEVEL_KEYS = ("wcId", "messageType", "newMsgId", "data")
DATA_KEYS = ("newMsgId", "fromUser", "toUser", "fromGroup", "self", "sel")


class PayloadError(WxarchiveError, ValueError):
    """The body is not a callback we can archive. `reason` is short, specific and safe to send back."""

    exit_code = 2
    http_status = 400

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


def echo(value: str) -> str:
    """`value` quoted for a reason: at most ECHO_LIMIT characters of it, so a reason stays short."""
    return repr(value[:ECHO_LIMIT]) + ("…" if len(value) > ECHO_LIMIT else "")


def decode_json(body: bytes) -> Any:
    """The JSON value of `body` as orjson reads it, lone surrogate escapes as U+FFFD; PayloadError if it is
    not standard JSON or nests deeper than MAX_DEPTH."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        doc = _decode_with_lone_surrogates(body, exc)
    # nesting deeper takes more than MAX_DEPTH opening and as many closing brackets: cheap tests first
    if (len(body) > 2 * MAX_DEPTH + 1 and body.count(b"{") + body.count(b"[") > MAX_DEPTH
            and nesting_depth(body) > MAX_DEPTH):
        raise PayloadError(f"body nests deeper than {MAX_DEPTH} levels")
    return doc


def _decode_with_lone_surrogates(body: bytes, exc: orjson.JSONDecodeError) -> Any:
    if "not valid UTF-8" in str(exc):
        raise PayloadError("body is not valid UTF-8") from None
    rewritten = _SURROGATE_ESCAPE.sub(_replace_lone_surrogate, body)
    if rewritten == body:
        raise _not_json(body, exc)
    try:
        return orjson.loads(rewritten)
    except orjson.JSONDecodeError as again:
        raise _not_json(rewritten, again) from None


def _replace_lone_surrogate(match: re.Match[bytes]) -> bytes:
    return match.group(0) if match.group(2) else match.group(1) + b"\\ufffd"


def _not_json(body: bytes, exc: orjson.JSONDecodeError) -> PayloadError:
    """Names a NaN or Infinity literal where orjson stopped (its position counts characters, not bytes)."""
    text = body.decode("utf-8", "replace")
    for start in (exc.pos - 1, exc.pos):
        literal = _NON_STANDARD.match(text, max(start, 0))
        if literal:
            return PayloadError(f"body is not standard JSON: {literal.group()} is not a JSON number")
    if str(exc).startswith("depth limit exceeded"):  # orjson's own limit, far above ours: say ours
        return PayloadError(f"body nests deeper than {MAX_DEPTH} levels")
    return PayloadError(f"body is not JSON: {exc}")


def nesting_depth(body: bytes) -> int:
    """How deeply a valid JSON `body` nests, without recursion: strings out, then a running sum of its brackets."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_A_BRACKET)
    return max(accumulate(map(_NESTING_STEP.__getitem__, brackets)), default=0)


def parse_callback(body: bytes) -> Callback:
    """The envelope of `body`. Unknown types and unknown fields are kept; only what cannot be archived fails."""
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise PayloadError(f"body must be a JSON object, got {json_type(doc)}")
    data = doc.get("data")
    if _may_repeat_a_key(body, doc, data):
        repeated = repeated_routing_key(body)
        if repeated is not None:
            raise PayloadError(f"duplicate key {repeated}")
    wc_id = doc.get("wcId")
    if wc_id is None or wc_id == "":
        raise PayloadError("missing wcId")
    if not isinstance(wc_id, str):
        raise PayloadError(f"wcId must be a string, got {json_type(wc_id)}")
    code = doc.get("messageType")
    if code is None or code == "":
        raise PayloadError("missing messageType")
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        raise PayloadError(f"messageType must be a string, got {json_type(code)}")
    message_type = lookup(str(code))
    if data is None:
        if message_type.kind not in _DATA_OPTIONAL:
            raise PayloadError("missing data")
        data = {}
    elif not isinstance(data, dict):
        raise PayloadError(f"data must be an object, got {json_type(data)}")
    account = doc.get("account")
    if account is not None and (isinstance(account, bool) or not isinstance(account, (str, int))):
        raise PayloadError(f"account must be a string, got {json_type(account)}")
    return Callback(wc_id=wc_id, account="" if account is None else str(account), message_type=message_type,
                    data=data, raw=body)


def _may_repeat_a_key(body: bytes, doc: dict[str, Any], data: Any) -> bool:
    """False only if no key of the body's top level or of its data object occurs twice; True sends the body
    to the exact check. Cheap tests, each sound on its own, in the order the common bodies settle them:

    - Every key is followed by a colon, so a body with no more colons than the keys orjson returned (it keeps
      a repeated key once) repeats none. Colons in text (times, URLs) and nested objects fail this one.
    - A colon followed by a backslash or a slash is inside a string (a JSON value cannot start with either):
      group XML's "wxid_sender:\\n" and "https://" do not count.
    - Every key ends in `":` unless whitespace precedes its colon: with no whitespace before any colon, no
      more `":` than keys repeats none."""
    keys = len(doc) + (len(data) if isinstance(data, dict) else 0)
    colons = body.count(b":")
    if colons <= keys or colons - body.count(b":\\") - body.count(b":/") <= keys:
        return False
    return body.count(b'":') > keys or b" :" in body.translate(_WHITESPACE_TO_SPACE)


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers its keys in order, when one of them repeats."""

    __slots__ = ("keys_in_order",)
    keys_in_order: list[str]


def _object_with_repeats(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.keys_in_order = [k for k, _ in pairs] if len(obj) < len(pairs) else []
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def repeated_routing_key(body: bytes) -> str | None:
    """The first of TOP_LEVEL_KEYS and DATA_KEYS (as "data.<key>") that occurs twice in its object, or None.

    Read by the stdlib with every key pair kept: the slow path, taken only when `_may_repeat_a_key`. The
    body is valid JSON no deeper than MAX_DEPTH (decode_json), so the stdlib reads it as orjson did."""
    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=_object_with_repeats, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # not reached after decode_json; kept so the path stays total
        raise PayloadError(f"body is not JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, _Object):
        return None
    for prefix, obj, names in (("", doc, TOP_LEVEL_KEYS), ("data.", doc.get("data"), DATA_KEYS)):
        if isinstance(obj, _Object) and obj.keys_in_order:
            for name in names:
                if obj.keys_in_order.count(name) > 1:
                    return prefix + name
    return None


def json_type(value: Any) -> str:
    """What a decoded JSON value is, in words for a reason: never the value itself, which may be huge."""
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


def as_u64(value: object, field: str) -> int | None:
    """A 64-bit id, exactly. Integers and ASCII digit strings are accepted; a float has already lost digits
    (orjson turns integers beyond 2^64-1 into floats), so it is an error, never a rounded id.
    A negative value is a signed-64-bit rendering of the same id (Java SDKs) and is mapped back.
    Zero, "0", "" and null all mean "no id"."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise PayloadError(f"{field} must be an integer, got a boolean")
    if isinstance(value, str):
        text = value.strip(ASCII_SPACE)
        if not ASCII_INT.fullmatch(text):
            raise PayloadError(f"{field} must be an integer in ASCII digits, got {echo(value)}")
        digits = text.lstrip("-").lstrip("0") or "0"
        if len(digits) > 20:  # before int(), which raises a ValueError beyond 4300 digits
            raise PayloadError(f"{field} is out of the 64-bit range")
        value = -int(digits) if text.startswith("-") else int(digits)
        if value == 0:
            return None
    if isinstance(value, float):
        raise PayloadError(f"{field} is not an exact integer (a float, or beyond 64 bits); send it as an integer or a string")
    if not isinstance(value, int):
        raise PayloadError(f"{field} must be an integer, got {json_type(value)}")
    if -(2**63) <= value < 0:
        value += 2**64
    if not 0 <= value <= MAX_U64:
        raise PayloadError(f"{field} is out of the 64-bit range")
    return value
