"""Hostile bodies: whatever the bytes, parsing answers with a record or a PayloadError, never another exception.

The edge turns any other exception into a 500 and the body is lost; the worker would stop on it. Bodies are
built as JSON text, not from Python values, so that they can hold what no encoder writes: repeated keys,
NaN and Infinity literals, lone surrogate escapes, numbers of thousands of digits, nesting past every
reader's limit, keys spelled with escapes, whitespace before colons. The known hostile values meet every
field of real callbacks in a fixed grid; hypothesis (derandomized: every run tries the same bodies, so a
failure reproduces and a pass means the same each time) adds random structure around them.

An accepted body must also mean the same to a reader that keeps the first of a repeated key, and its record
must fit the archive's columns.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from schemas.callback import DATA_KEYS, TOP_LEVEL_KEYS, PayloadError, as_u64
from schemas.message import ArchiveMessage, parse_message
from tests.fixtures.callbacks import NO_GROUP_VARIANT, PRIVATE, chat_callback

REASON_LIMIT = 160  # a reason is a sentence, whatever it quotes from the body
HOSTILE = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ENVELOPE_KEYS = ["wcId", "account", "messageType", "data", "newMsgId"]
DATA_FIELDS = ["fromUser", "toUser", "fromGroup", "content", "newMsgId", "msgId", "self", "sel", "timestamp",
               "createTime", "atlist", "atList", "wId", "title", "msgType", "userName"]
CODES = ["60001", "80001", "60014", "60018", "80007", "85001", "00000", "30000", "61234", 60001, 5]

# JSON text of values that only an attacker (or a broken SDK) writes.
LONG = 5000
ODD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0", "0.0", "1.5e300", "18446744073709551616",
               "-9223372036854775809", "3166120021925175285.0", "-" + "9" * 40, "1E2", "0", "1" * LONG]
ODD_STRINGS = [json.dumps(s) for s in [
    "١٢٣", "１２３", "²", "߁", "1e999", "nan", "inf", "-Infinity", "9" * LONG, " 123 ", "12_3", "-0", "0", "00", "+5",
    "18446744073709551616", "-1", "\ud800", "\udc00x", "\ud83d\ude00", "wxid_archiver01", "1@chatroom", "x:\n<msg/>",
    "true", "1", "", f'<sysmsg type="revokemsg"><revokemsg><newmsgid>{"9" * LONG}</newmsgid></revokemsg></sysmsg>',
    "<msg><appmsg><type>²</type><refermsg><svrid>１２３</svrid><content>&lt;msg&gt;&lt;appmsg&gt;&lt;title&gt;t"
    "&lt;/title&gt;&lt;/appmsg&gt;&lt;/msg&gt;</content></refermsg></appmsg></msg>"]]


def _nest(depth: int, inner: str, kind: str) -> str:
    return ("[" * depth + inner + "]" * depth) if kind == "[" else ('{"a":' * depth + inner + "}" * depth)


# around every limit: ours (200 levels in all), orjson's encoder (254 below data), its decoder (1024)
DEEP = [_nest(d, inner, kind) for d in (198, 199, 253, 1023) for inner in ("1", '"\\ud800"') for kind in "[{"]
ODD_VALUES = ODD_NUMBERS + ODD_STRINGS + DEEP


def _key(name: str, escaped: bool) -> str:
    """A key as JSON text; `escaped` spells its first letter as a \\u escape, which every reader decodes."""
    if not escaped or not name or ord(name[0]) > 0xFFFF:
        return json.dumps(name)
    return f'"\\u{ord(name[0]):04x}' + json.dumps(name[1:])[1:]


def _text(pairs: list[tuple[str, str]], spaces: list[str] | None = None, escaped: bool = False) -> str:
    """An object's JSON text from (key, value text) pairs, repeats kept, with `spaces` around every colon."""
    gap = iter(spaces or [])
    return "{" + ",".join(f"{next(gap, '')}{_key(k, escaped)}{next(gap, '')}:{next(gap, '')}{v}" for k, v in pairs) + "}"


def _fixture_pairs(code: str, *, group: bool, with_id: bool, surrogate: bool) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A real callback as (envelope pairs, data pairs) of JSON text: without newMsgId its data is hashed for an
    identity; with a lone surrogate in the text the body takes the decoder's second path."""
    doc = chat_callback(code, group=group)
    data = [(k, json.dumps(v, ensure_ascii=False)) for k, v in doc.pop("data").items() if with_id or k != "newMsgId"]
    if surrogate:
        data = [(k, '"\\ud800 ' + v[1:] if k == "content" else v) for k, v in data]
    return [(k, json.dumps(v)) for k, v in doc.items()], data


def _with_value(top: list[tuple[str, str]], data: list[tuple[str, str]], in_data: bool, key: str, value: str,
                repeat: bool) -> bytes:
    """The body with `value` for `key` (in data or the envelope), in its place or as a repeat at the end."""
    level = data if in_data else top
    level = ([(k, v) for k, v in level] if repeat else [(k, v) for k, v in level if k != key]) + [(key, value)]
    envelope = top if in_data else level
    return _text(envelope + [("data", _text(level if in_data else data))]).encode("utf-8", "surrogatepass")


def _first_key_reader(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A reader that keeps the first of a repeated key, as many JSON libraries outside Python do."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def _no_surrogates(value: Any) -> Any:
    return re.sub("[\ud800-\udfff]", "\ufffd", value) if isinstance(value, str) else value


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _check_one_reading(raw: bytes, m: ArchiveMessage) -> None:
    """An accepted body means the same to a first-key reader, and its record fits the archive's columns."""
    doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_first_key_reader, parse_constant=_refuse)
    assert _no_surrogates(doc["wcId"]) == m.account
    data = doc.get("data") or {}
    assert as_u64(data.get("newMsgId"), "newMsgId") == m.new_msg_id
    assert m.is_self or _no_surrogates(data.get("fromUser")) != m.account
    assert m.new_msg_id is None or 0 < m.new_msg_id < 2**64
    assert m.native_type is None or -(2**31) <= m.native_type < 2**31
    assert m.time_ms is None or 0 < m.time_ms < 2**63
    orjson.dumps(m.to_dict())  # the worker can write the record


def _parse_or_refuse(raw: bytes) -> None:
    """The edge's reading (no XML) and the worker's: each a record that fits, or a PayloadError with a short reason."""
    for with_xml in (False, True):
        try:
            m = parse_message(raw, with_xml=with_xml)
        except PayloadError as exc:
            assert 0 < len(exc.reason) <= REASON_LIMIT, exc.reason
        else:
            _check_one_reading(raw, m)


# -- every known hostile value in every field of real callbacks ----------------------------------------

@pytest.mark.parametrize(("with_id", "surrogate"), [(True, False), (False, True)], ids=["newMsgId", "hashed-surrogate"])
@pytest.mark.parametrize(("code", "group"), [("60001", False), ("60007", True)], ids=["private-text", "group-link"])
def test_every_odd_value_in_every_field(code: str, group: bool, with_id: bool, surrogate: bool) -> None:
    top, data = _fixture_pairs(code, group=group, with_id=with_id, surrogate=surrogate)
    fields = [(False, k) for k in ENVELOPE_KEYS] + [(True, k) for k in DATA_FIELDS]
    for value in ODD_VALUES:
        for in_data, key in fields:
            for repeat in (False, True):
                _parse_or_refuse(_with_value(top, data, in_data, key, value, repeat))


# -- random structure -----------------------------------------------------------------------------------

spacing = st.sampled_from(["", "", " ", "\t", "\n ", "  "])
strings = st.text(max_size=20).map(json.dumps)  # json.dumps writes lone surrogates as \ud800 escapes
scalars = st.one_of(st.sampled_from(["null", "true", "false"]), st.integers(-(2**70), 2**70).map(str),
                    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps), st.sampled_from(ODD_VALUES), strings)


def _render(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> str:
    """`pairs` as an object in any order, each key maybe escaped, spaced any way."""
    order = draw(st.permutations(pairs))
    return "{" + ",".join(f"{draw(spacing)}{_key(k, draw(st.booleans()))}{draw(spacing)}:{draw(spacing)}{v}"
                          for k, v in order) + draw(spacing) + "}"


@st.composite
def objects(draw: st.DrawFn, names: list[str], values: st.SearchStrategy[str], max_size: int = 8) -> str:
    """A JSON object whose keys are drawn from `names` (and any text), repeats allowed."""
    key_names = st.one_of(st.sampled_from(names), st.text(max_size=6))
    return _render(draw, draw(st.lists(st.tuples(key_names, values), max_size=max_size)))


values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4).map(lambda vs: "[" + ",".join(vs) + "]")
                      | objects(DATA_FIELDS, inner, max_size=4), max_leaves=10)
benign = st.one_of(strings, st.integers(0, 2**64 - 1).map(str), st.sampled_from(["true", "false", "null", '"wxid_archiver01"']))


@st.composite
def callbacks(draw: st.DrawFn) -> str:
    """A callback-shaped body: the usual fields, most of them sane and any of them hostile, in any order, with
    extra pairs (repeats of usual keys among them)."""
    def field() -> str:
        return draw(values) if draw(st.integers(0, 5)) == 5 else draw(benign)

    data = [(k, field()) for k in DATA_FIELDS if draw(st.booleans())]
    data += draw(st.lists(st.tuples(st.sampled_from(DATA_FIELDS) | st.text(max_size=4), values), max_size=2))
    wc_id = draw(values) if draw(st.integers(0, 5)) == 5 else draw(st.text(min_size=1, max_size=12).map(json.dumps))
    code = draw(values) if draw(st.integers(0, 5)) == 5 else json.dumps(draw(st.sampled_from(CODES)))
    top = [("wcId", wc_id), ("messageType", code), ("account", field()),
           ("data", _render(draw, data) if draw(st.integers(0, 9)) else draw(values))]
    top += draw(st.lists(st.tuples(st.sampled_from(ENVELOPE_KEYS) | st.text(max_size=4), values), max_size=1))
    return _render(draw, top)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


bodies = st.one_of(callbacks().map(_utf8), objects(ENVELOPE_KEYS, values, max_size=6).map(_utf8), st.binary(max_size=200),
                   callbacks().flatmap(lambda t: st.integers(0, len(t)).map(lambda i: _utf8(t[:i]))))


@HOSTILE
@given(bodies)
def test_only_payload_errors_escape(raw: bytes) -> None:
    _parse_or_refuse(raw)


@st.composite
def real_callbacks_with_a_hostile_field(draw: st.DrawFn) -> bytes:
    """A real callback with one field of the envelope or of data given a random value, in its place or repeated."""
    code = draw(st.sampled_from(sorted(PRIVATE)))
    top, data = _fixture_pairs(code, group=code not in NO_GROUP_VARIANT and draw(st.booleans()),
                               with_id=draw(st.booleans()), surrogate=draw(st.booleans()))
    in_data, key = draw(st.sampled_from([(False, k) for k in ENVELOPE_KEYS] + [(True, k) for k in DATA_FIELDS]))
    return _with_value(top, data, in_data, key, draw(values), draw(st.booleans()))


@HOSTILE
@given(real_callbacks_with_a_hostile_field())
def test_a_random_value_in_a_field_of_a_real_callback(raw: bytes) -> None:
    _parse_or_refuse(raw)


# -- repeated routing keys, however spelled ------------------------------------------------------------

@st.composite
def repeated_routing_keys(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid callback in which one routing key occurs twice (or three times) in its object, each key maybe
    spelled with an escape, with any whitespace around colons."""
    prefix, name = draw(st.sampled_from([("", k) for k in TOP_LEVEL_KEYS] + [("data.", k) for k in DATA_KEYS]))
    data = [("fromUser", '"wxid_peer"'), ("toUser", '"wxid_acct"'), ("content", draw(strings)), ("newMsgId", "1"),
            ("self", "false")]
    top = [("wcId", '"wxid_acct"'), ("messageType", '"60001"')]
    target = data if prefix else top
    for _ in range(2):
        target.insert(draw(st.integers(0, len(target))), (name, draw(st.one_of(benign, strings))))
    top.append(("data", _render(draw, data)))
    return _utf8(_render(draw, top)), prefix + name


@HOSTILE
@given(repeated_routing_keys())
def test_a_repeated_routing_key_is_refused_however_it_is_spelled(case: tuple[bytes, str]) -> None:
    raw, key = case
    with pytest.raises(PayloadError, match=f"^duplicate key {re.escape(key)}$"):
        parse_message(raw, with_xml=False)
