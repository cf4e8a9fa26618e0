"""Parsing E云 callbacks: every catalogued type, the seed documents' own examples, and the awkward cases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.callback import PayloadError, parse_callback
from schemas.message import parse_message
from schemas.message_types import CATALOGUE, Kind
from tests.fixtures.callbacks import (
    ACCOUNT,
    EVENTS,
    GROUP,
    GROUP_EVENT_CODES,
    MEMBER,
    NO_GROUP_VARIANT,
    PEER,
    PRIVATE,
    QUOTE as QUOTE_XML,
    RECALL,
    body,
    chat_callback,
    group_event_data,
)
from tests.fixtures.seed import callback_example

GROUP_CODES = {str(int(c) + 20000) for c in PRIVATE if c not in NO_GROUP_VARIANT}


def test_every_catalogued_type_has_a_fixture() -> None:
    covered = set(PRIVATE) | GROUP_CODES | set(EVENTS) | set(GROUP_EVENT_CODES)
    assert covered == set(CATALOGUE)


def _check(message: Any, expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if key == "extra":
            assert value.items() <= message.extra.items()
        else:
            assert getattr(message, key) == value, key


@pytest.mark.parametrize("code", sorted(PRIVATE))
def test_private_message(code: str) -> None:
    m = parse_message(body(chat_callback(code)))
    _check(m, PRIVATE[code][2])
    assert (m.account, m.conversation, m.sender, m.receiver) == (ACCOUNT, PEER, PEER, ACCOUNT)
    assert not m.is_group and not m.is_self
    assert m.kind == "message" and m.type_code == code
    assert m.new_msg_id == 3166120021925175285 and m.identity == "3166120021925175285"
    assert m.time_ms == 1640594470000


@pytest.mark.parametrize("code", sorted(GROUP_CODES))
def test_group_message_with_sender_prefix(code: str) -> None:
    private = str(int(code) - 20000)
    m = parse_message(body(chat_callback(private, group=True)))
    _check(m, {k: v for k, v in PRIVATE[private][2].items()})
    assert m.type_code == code and m.is_group
    assert (m.conversation, m.sender) == (GROUP, MEMBER)
    assert m.kafka_key == f"{ACCOUNT}|{GROUP}"


def test_self_sent_private_message_belongs_to_the_peer() -> None:
    m = parse_message(body(chat_callback("60001", self_sent=True)))
    assert m.is_self and m.sender == ACCOUNT and m.conversation == PEER


def _own_private(code: str, **data: Any) -> dict[str, Any]:
    """A private message the account sent, as a push that does not say so: `self` false (or absent)."""
    doc = chat_callback(code, self_sent=True)
    doc["data"].update(data)
    return doc


def test_recall_of_own_message_with_self_false_belongs_to_the_peer() -> None:
    """Issue 10: E云 pushes the recall of one's own private message with self: false."""
    recall = RECALL.replace("<session>wxid_peer7788</session>", f"<session>{PEER}</session>")
    m = parse_message(body(_own_private("60018", self=False, content=recall)))
    assert m.is_self and m.sender == ACCOUNT and m.receiver == PEER
    assert m.conversation == PEER and m.kafka_key == f"{ACCOUNT}|{PEER}"
    assert m.recalled_new_msg_id == 1497474118261484795


@pytest.mark.parametrize("flag", [{"self": False}, {"self": 0}, {"sel": False}, {}])
def test_from_user_the_account_is_its_own_message_whatever_self_says(flag: dict[str, Any]) -> None:
    doc = _own_private("60001")
    del doc["data"]["self"]
    doc["data"].update(flag)
    m = parse_message(body(doc))
    assert m.is_self and m.sender == ACCOUNT and m.conversation == PEER


def test_own_message_in_a_group_stays_in_the_group() -> None:
    doc = chat_callback("60001", group=True, self_sent=True)
    m = parse_message(body(doc))
    assert m.is_self and m.sender == ACCOUNT and m.conversation == GROUP


def test_received_message_is_still_the_peers() -> None:
    m = parse_message(body(chat_callback("60018")))  # the peer recalls their own message to the account
    assert not m.is_self and m.sender == PEER and m.conversation == PEER


@pytest.mark.parametrize("code", sorted(EVENTS))
def test_account_and_friend_events(code: str) -> None:
    data, expected = EVENTS[code]
    m = parse_message(body({"wcId": ACCOUNT, "account": "17200000000", "messageType": code, "data": data}))
    _check(m, expected)
    assert m.new_msg_id is None and m.identity.startswith("h:")
    if m.conversation == "":
        assert m.kafka_key == ACCOUNT


@pytest.mark.parametrize("code", GROUP_EVENT_CODES)
def test_group_events(code: str) -> None:
    m = parse_message(body({"wcId": ACCOUNT, "messageType": code, "data": group_event_data(code)}))
    assert m.kind == "group_event" and m.conversation == GROUP and m.is_group
    if code in ("85001", "85015"):
        assert m.identity.startswith("h:")
    else:
        assert m.sender == MEMBER and m.identity == str(6100000000000000000 + int(code[-2:]))


def test_seed_callback_example_parses_to_the_values_it_shows() -> None:
    raw = callback_example()
    m = parse_message(raw)
    assert m.account == "wxid_phyyedw9xap22" and m.platform_account == "17200000000"
    assert m.type_code == "80001" and m.type_name == "text" and m.is_group
    assert m.conversation == "25411981800@chatroom" and m.sender == "wxid_ynu1tgjz156j22"
    assert m.receiver == "wxid_phyyedw9xap22" and not m.is_self
    assert (m.msg_id, m.new_msg_id) == (1685074592, 1497474118261484795)
    assert m.time_ms == 1640772092 * 1000 and m.text == "消息内容"
    assert m.at_list == ["wxid_phyyedw9xap22"] and m.w_id == "12491ae9-62aa-4f7a-83e6-9db4e9f28e3c"
    assert m.raw == raw and b'"memberCount": 8' in m.raw  # a field we do not model survives in the raw body


def test_reference_envelope_example() -> None:
    raw = (b'{ "wcId": "wxid_bot", "account": "17200000000", "messageType": "60001", "data": { "wId": "12491ae9-...",'
           b' "fromUser": "wxid_x", "toUser": "wxid_bot", "content": "hi", "msgId": 1052001123,'
           b' "newMsgId": 3166120021925175285, "self": false, "timestamp": 1640594470 } }')
    m = parse_message(raw)
    assert (m.conversation, m.sender, m.text, m.new_msg_id) == ("wxid_x", "wxid_x", "hi", 3166120021925175285)


# -- awkward but valid ---------------------------------------------------------------------------

def _with(data: dict[str, Any], code: str = "60001") -> bytes:
    doc = chat_callback(code)
    doc["data"].update(data)
    return body(doc)


def test_sel_in_place_of_self() -> None:
    doc = chat_callback("60014")
    del doc["data"]["self"]
    doc["data"]["sel"] = True
    m = parse_message(body(doc))
    assert m.is_self and m.conversation == ACCOUNT  # toUser of this fixture is the account


@pytest.mark.parametrize("raw_id", [b"18446744073709551615", b'"18446744073709551615"'])
def test_new_msg_id_up_to_u64_max_exactly(raw_id: bytes) -> None:
    raw = body(chat_callback("60001")).replace(b"3166120021925175285", raw_id)
    assert parse_message(raw).new_msg_id == 2**64 - 1


def test_negative_signed_rendering_maps_to_the_same_id() -> None:
    assert parse_message(_with({"newMsgId": -1})).new_msg_id == 2**64 - 1


@pytest.mark.parametrize("raw_id", [b"18446744073709551616", b"1.4974741182614848e18", b"3166120021925175285.0"])
def test_new_msg_id_that_lost_precision_is_refused(raw_id: bytes) -> None:
    raw = body(chat_callback("60001")).replace(b"3166120021925175285", raw_id)
    with pytest.raises(PayloadError, match="newMsgId is not an exact integer"):
        parse_message(raw)


def test_seconds_and_milliseconds() -> None:
    assert parse_message(_with({"timestamp": 1640594470})).time_ms == 1640594470000
    assert parse_message(_with({"timestamp": 1640594470123})).time_ms == 1640594470123
    assert parse_message(_with({"timestamp": "1640594470"})).time_ms == 1640594470000
    doc = chat_callback("60001")
    del doc["data"]["timestamp"]
    doc["data"]["createTime"] = 1641457769
    assert parse_message(body(doc)).time_ms == 1641457769000


def test_missing_data_is_fine_for_test_and_offline_only() -> None:
    assert parse_message(b'{"wcId":"wxid_a","messageType":"00000"}').kind == "test"
    assert parse_message(b'{"wcId":"wxid_a","messageType":"30000","data":null}').kind == "account_event"
    with pytest.raises(PayloadError, match="missing data"):
        parse_message(b'{"wcId":"wxid_a","messageType":"60001"}')


def test_emoji_and_mention_separator_survive() -> None:
    text = "@老王\u2005 看这个 😂👍🏽 👨‍👩‍👧"
    m = parse_message(_with({"content": text, "atlist": ["wxid_peer7788"]}, code="60001"))
    assert m.text == text and m.at_list == ["wxid_peer7788"]


def test_lone_surrogate_is_kept_as_replacement_and_raw_untouched() -> None:
    raw = body(chat_callback("60001")).replace("你好".encode(), b"\\ud800\\u4f60")
    m = parse_message(raw)
    assert m.text.startswith("\ufffd你") and m.raw == raw
    orjson.dumps(m.text)  # safe to re-encode downstream


def test_unknown_type_and_fields_survive() -> None:
    raw = b'{"wcId":"wxid_a","messageType":"61234","newTopLevel":1,"data":{"fromUser":"wxid_b","content":"hi","brandNew":{"x":1}}}'
    m = parse_message(raw)
    assert m.type_name == "unknown" and m.kind == "unknown" and m.text == "hi" and m.raw == raw
    assert parse_message(raw.replace(b'"61234"', b"5")).type_code == "5"  # 原生版 integer codes are kept too


def test_hash_identity_is_stable_and_specific() -> None:
    a = parse_message(b'{"wcId":"wxid_a","messageType":"85001","data":{"userName":"1@chatroom","nickName":"A"}}')
    b = parse_message(b'{"data":{"nickName":"A","userName":"1@chatroom"},"messageType":"85001","wcId":"wxid_a"}')
    c = parse_message(b'{"wcId":"wxid_a","messageType":"85001","data":{"userName":"1@chatroom","nickName":"B"}}')
    d = parse_message(b'{"wcId":"wxid_z","messageType":"85001","data":{"userName":"1@chatroom","nickName":"A"}}')
    e = parse_message(b'{"wcId":"wxid_a","messageType":"85001","data":{"userName":"1@chatroom","nickName":"A","wId":"new"}}')
    assert a.identity == b.identity == e.identity  # key order and a re-login's new wId do not matter
    assert len({a.identity, c.identity, d.identity}) == 3


def test_group_text_is_never_taken_for_a_sender_prefix() -> None:
    doc = chat_callback("60001", group=True)
    doc["data"]["content"] = "note:\n<b>not xml from a sender</b> just text"
    m = parse_message(body(doc))
    assert m.sender == MEMBER


def test_sender_from_prefix_when_from_user_is_the_group() -> None:
    doc = chat_callback("60007", group=True)
    doc["data"]["fromUser"] = GROUP
    m = parse_message(body(doc))
    assert m.sender == MEMBER and m.title == "季度合规培训通知"


def test_broken_xml_gives_no_fields_not_an_error() -> None:
    m = parse_message(_with({"content": "<msg><appmsg><title>unterminated"}, code="60007"))
    assert m.title == "" and m.text == ""


# -- bad input: a clear reason ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "body is not JSON"),
        (b"wcId=wxid_a&messageType=60001", "body is not JSON"),
        (b'{"wcId":"wxid_a","messageType":"60001","data":{"content":"\xff\xfe"}}', "body is not valid UTF-8"),
        (b"[1,2]", "body must be a JSON object, got an array"),
        (b'{"messageType":"60001","data":{}}', "missing wcId"),
        (b'{"wcId":42,"messageType":"60001","data":{}}', "wcId must be a string, got a number"),
        (b'{"wcId":"wxid_a","data":{}}', "missing messageType"),
        (b'{"wcId":"wxid_a","messageType":["60001"],"data":{}}', "messageType must be a string, got an array"),
        (b'{"wcId":"wxid_a","messageType":"60001","data":"hi"}', "data must be an object, got a string"),
        (b'{"wcId":"wxid_a","messageType":"60001","data":{"newMsgId":"12ab"}}', "newMsgId must be an integer"),
        (b'{"wcId":"wxid_a","messageType":"60001","data":{"newMsgId":true}}', "newMsgId must be an integer, got a boolean"),
        (b'{"wcId":"wxid_a","messageType":"60001","data":{"timestamp":"yesterday"}}', "data.timestamp must be a number"),
        (b'{"wcId":"wxid_a","messageType":"60001","data":{"self":"maybe"}}', "data.self must be a boolean"),
        (b'{"wcId":"wxid_a","messageType":"60001","data":{"content":{"t":1}}}', "data.content must be a string"),
        (b'{"wcId":"wxid_a","messageType":"80001","data":{"atlist":7}}', "data.atlist must be a list"),
    ],
)
def test_bad_input_names_the_problem(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_message(raw)
    assert err.value.reason.startswith(reason)


def test_envelope_only_parse_is_cheap_and_keeps_kind() -> None:
    cb = parse_callback(body(chat_callback("60001", group=True)))
    assert cb.message_type.kind is Kind.MESSAGE and cb.message_type.group and cb.wc_id == ACCOUNT


# -- issue 11: every input gets a PayloadError, and one reading -----------------------------------------

def _raw_data(fields: str, code: str = "60001") -> bytes:
    """A body whose data object is the JSON text `fields`, for what no encoder writes."""
    return b'{"wcId":"' + ACCOUNT.encode() + b'","messageType":"' + code.encode() + b'","data":{' + fields.encode() + b"}}"


def _refused(raw: bytes, reason: str) -> None:
    for with_xml in (False, True):
        with pytest.raises(PayloadError) as err:
            parse_message(raw, with_xml=with_xml)
        assert err.value.reason.startswith(reason), err.value.reason
        assert len(err.value.reason) <= 160


@pytest.mark.parametrize(("timestamp", "reason"), [
    ('"1e999"', "data.timestamp must be a finite number"),          # float() gave inf: OverflowError
    ('"-1e999"', "data.timestamp must be a finite number"),
    ('"nan"', "data.timestamp must be a number, got 'nan'"),        # float() gave nan: ValueError
    ('"Infinity"', "data.timestamp must be a number"),
    ('"١٦٤٠٥٩٤٤٧٠"', "data.timestamp must be a number"),             # float() reads Arabic-Indic digits
    ('"1_640_594_470"', "data.timestamp must be a number"),          # and underscores
    ("1.5e300", "data.timestamp is out of range"),                   # beyond the Int64 column
    ('"' + "9" * 5000 + '"', "data.timestamp must be a number"),
])
def test_timestamp_that_is_no_time_is_refused(timestamp: str, reason: str) -> None:
    _refused(_raw_data(f'"newMsgId":1,"timestamp":{timestamp}'), reason)


def test_a_5000_digit_id_is_out_of_range_not_a_value_error() -> None:
    _refused(_raw_data('"newMsgId":"' + "1" * 5000 + '"'), "newMsgId is out of the 64-bit range")
    _refused(_raw_data('"newMsgId":1,"msgId":"-' + "9" * 5000 + '"'), "msgId is out of the 64-bit range")
    padded = parse_message(_raw_data('"newMsgId":"' + "0" * 4990 + '12","msgId":"-' + "0" * 4990 + '1"'))
    assert (padded.new_msg_id, padded.msg_id) == (12, 2**64 - 1)  # leading zeros are no digits


def _deep(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


def test_data_nested_too_deep_is_refused_with_or_without_an_id() -> None:
    # body, data and x are three levels: 198 arrays inside x make exactly MAX_DEPTH (200)
    fine = parse_message(_raw_data('"x":' + _deep(198), code="85001"))
    assert fine.identity.startswith("h:")  # hashed: orjson re-encodes it
    for fields in ('"x":' + _deep(199), '"x":' + _deep(300), '"newMsgId":1,"x":' + _deep(300), '"x":' + _deep(1100)):
        _refused(_raw_data(fields, code="85001"), "body nests deeper than 200 levels")  # was orjson's TypeError


def test_lone_surrogate_with_deep_nesting_or_non_numbers_is_refused() -> None:
    """The stdlib fallback took NaN and Infinity and had its own recursion limit (RecursionError, OverflowError
    in _small_int). A lone surrogate now only changes the spelling orjson reads, not the reader."""
    text = '"content":"\\ud800 hi"'
    _refused(_raw_data(f'{text},"x":{_deep(5000)}'), "body nests deeper than 200 levels")
    _refused(_raw_data(f'{text},"newMsgId":1,"msgType":Infinity'), "body is not standard JSON: Infinity is not a JSON number")
    _refused(_raw_data(f'{text},"newMsgId":1,"msgType":-Infinity'), "body is not standard JSON: -Infinity is not a JSON number")
    _refused(_raw_data(f'{text},"newMsgId":1,"timestamp":NaN'), "body is not standard JSON: NaN is not a JSON number")
    _refused(_raw_data(f'{text},"newMsgId":18446744073709551616'), "newMsgId is not an exact integer")  # as orjson reads it
    # a number beyond 64 bits in an unknown field: the stdlib read an int that orjson could not hash (TypeError)
    m = parse_message(_raw_data(f'{text},"unknown":' + "1" * 30, code="85001"))
    assert m.text.startswith("\ufffd") and m.identity.startswith("h:")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_numbers_are_refused(literal: str) -> None:
    _refused(_raw_data(f'"newMsgId":1,"x":{literal}'), f"body is not standard JSON: {literal} is not a JSON number")
    _refused(_raw_data(f'"newMsgId":1,"fromUser":"a","fromUser":"b","x":{literal}'), "body is not standard JSON")


@pytest.mark.parametrize(("key", "first"), [("wcId", '"wxid_other"'), ("messageType", '"80001"'), ("newMsgId", "2"),
                                            ("data", '{"newMsgId":2}')])
def test_a_repeated_top_level_routing_key_is_refused(key: str, first: str) -> None:
    raw = f'{{"{key}":{first},"wcId":"wxid_acctA","messageType":"60001","newMsgId":1,"data":{{"newMsgId":1}}}}'
    _refused(raw.encode(), f"duplicate key {key}")


@pytest.mark.parametrize("key", ["newMsgId", "fromUser", "toUser", "fromGroup", "self", "sel"])
def test_a_repeated_data_routing_key_is_refused(key: str) -> None:
    _refused(_raw_data(f'"{key}":"1","newMsgId":1,"fromUser":"wxid_peer","{key}":"2"'), f"duplicate key data.{key}")


@pytest.mark.parametrize("raw", [
    b'{"wcId":"wxid_other","messageType":"60001","data":{"newMsgId":1},"wcId":"wxid_acctA"}',  # the issue's body
    b'{"wcId" :"wxid_other","messageType":"60001","data":{"newMsgId":1},"wcId"\t:"wxid_acctA"}',  # no `":` to count
    b'{"wc\\u0049d":"wxid_other","messageType":"60001","data":{"newMsgId":1},"wcId":"wxid_acctA"}',  # an escaped key
    b'{"wcId":"wxid_other","messageType":"60001","data":{"content":"https://x 10:30 a:\\nb"},"wcId":"wxid_acctA"}',
])
def test_a_repeated_wcid_is_refused_however_it_is_spelled(raw: bytes) -> None:
    _refused(raw, "duplicate key wcId")


def test_repeats_that_route_nothing_are_kept_as_orjson_reads_them() -> None:
    assert parse_message(_raw_data('"newMsgId":1,"content":"a","content":"b"')).text == "b"
    nested = parse_message(_raw_data('"newMsgId":1,"extra":{"fromUser":"a","fromUser":"b"}'))
    assert nested.new_msg_id == 1  # a repeat inside an unknown object is not the routing field
    both = parse_message(b'{"wcId":"wxid_a","messageType":"60001","newMsgId":5,"data":{"newMsgId":1}}')
    assert both.new_msg_id == 1  # the same name at two levels is no repeat


@pytest.mark.parametrize("digits", ["١٢٣", "１２３", "߁", "²", "12_3", "+5"])
def test_ids_are_ascii_digits_only(digits: str) -> None:
    _refused(_raw_data(f'"newMsgId":"{digits}"'), "newMsgId must be an integer in ASCII digits")
    _refused(_raw_data(f'"newMsgId":1,"msgId":"{digits}"'), "msgId must be an integer in ASCII digits")
    assert parse_message(_raw_data(f'"newMsgId":1,"msgType":"{digits}"')).native_type is None


def test_ids_inside_xml_are_ascii_digits_only() -> None:
    for digits in ("１２３", "²", "١٢٣", "9" * 5000):
        quote = QUOTE_XML.replace("7773749793478223190", digits)
        recall = RECALL.replace("1497474118261484795", digits)
        assert parse_message(_with({"content": quote}, code="60014")).quoted_new_msg_id is None
        assert parse_message(_with({"content": recall}, code="60018")).recalled_new_msg_id is None


def test_zero_as_a_string_is_no_id_as_zero_is() -> None:
    for zero in ('"0"', "0", '"00"', '"-0"'):
        assert parse_message(_raw_data(f'"newMsgId":{zero}', code="85001")).new_msg_id is None


def test_native_type_outside_int32_is_unknown_not_a_wrong_number() -> None:
    for value in ("2147483648", '"99999999999"', "1.5e300", '"' + "9" * 5000 + '"'):
        assert parse_message(_raw_data(f'"newMsgId":1,"msgType":{value}')).native_type is None
    assert parse_message(_raw_data('"newMsgId":1,"msgType":"49"')).native_type == 49
