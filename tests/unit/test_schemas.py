"""Parsing E云 callbacks: every catalogued type, the seed documents' own examples, and the awkward cases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.callback import PayloadError, parse_callback
from schemas.message import parse_message
from schemas.message_types import CATALOGUE, Kind
from tests.fixtures.seed import callback_example
from tests.fixtures.callbacks import (ACCOUNT, EVENTS, GROUP, GROUP_EVENT_CODES, MEMBER, NO_GROUP_VARIANT, PEER, PRIVATE,
                                      RECALL, body, chat_callback, group_event_data)

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
