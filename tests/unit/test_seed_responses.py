"""The API documents' own response examples parse to the values they show, through the client's models."""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas.eyun_api import SUCCESS, AddressList, Contact, LoginWx, SentMessage

SEED = (Path(__file__).parents[3] / "shared" / "seeds" / "000_76baa4bda5aa395e.txt").read_text()


def _examples(section: str, marker: str = "成功返回示例") -> list[dict]:  # type: ignore[type-arg]
    """Every JSON object after `marker` inside the section headed `# section`."""
    start = SEED.index("# " + section)
    end = SEED.find("\n# ", start + 1)
    text = SEED[start:end if end > 0 else None]
    found, at = [], text.find(marker)
    while at >= 0:
        brace = text.index("{", at)
        depth = 0
        for i, ch in enumerate(text[brace:], brace):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth == 0:
                found.append(orjson.loads(text[brace:i + 1]))
                break
        at = text.find(marker, brace)
    return found


def test_get_contact_example() -> None:
    (doc,) = _examples("获取联系人信息接口")
    assert doc["code"] == SUCCESS
    contact = Contact.parse(doc["data"][0])
    assert (contact.userName, contact.nickName, contact.signature, contact.sex) == ("test558666", "追风少年666", "66666", 1)
    assert contact.aliasName == "test558666" and contact.bigHead.endswith("/0") and contact.v1.endswith("@stranger")


def test_send_text_examples() -> None:
    for section, wc_id in (("发送文本消息", "azhichao"), ("群聊@接口", "22270365143@chatroom")):
        (doc,) = _examples(section)
        sent = SentMessage.parse(doc["data"])
        assert (sent.type, sent.msgId, sent.newMsgId, sent.createTime, sent.wcId) == (1, 2562652205, 4482117376572170921,
                                                                                    1641457769, wc_id)


def test_address_list_example_with_its_empty_string_lists() -> None:
    (doc,) = _examples("获取通讯录列表接口")
    assert AddressList.parse(doc["data"]) == AddressList(friends=[], chatrooms=[], ghs=[], others=[])


def test_query_login_wx_example() -> None:
    (doc,) = _examples("查询账号中在线的微信列表")
    assert [LoginWx.parse(d) for d in doc["data"]] == [LoginWx("wxid_i6qsbbjenju2", "72223018-7f2a-4f4f-bfa3-26e47dbd61")]


def test_failure_examples_use_the_string_code_1001() -> None:
    for section in ("获取联系人信息接口", "发送文本消息", "初始化通讯录列表接口", "获取通讯录列表接口"):
        (doc,) = _examples(section, "错误返回示例")
        assert doc == {"message": "失败", "code": "1001", "data": None}
