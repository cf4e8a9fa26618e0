"""The API documents' own response examples parse to the values they show, through the client's models."""

from __future__ import annotations

from schemas.eyun_api import SUCCESS, AddressList, Contact, LoginWx, SentMessage
from tests.fixtures.seed import examples


def test_get_contact_example() -> None:
    (doc,) = examples("获取联系人信息接口")
    assert doc["code"] == SUCCESS
    contact = Contact.parse(doc["data"][0])
    assert (contact.userName, contact.nickName, contact.signature, contact.sex) == ("test558666", "追风少年666", "66666", 1)
    assert contact.aliasName == "test558666" and contact.bigHead.endswith("/0") and contact.v1.endswith("@stranger")


def test_send_textexamples() -> None:
    for section, wc_id in (("发送文本消息", "azhichao"), ("群聊@接口", "22270365143@chatroom")):
        (doc,) = examples(section)
        sent = SentMessage.parse(doc["data"])
        assert (sent.type, sent.msgId, sent.newMsgId, sent.createTime, sent.wcId) == (1, 2562652205, 4482117376572170921,
                                                                                    1641457769, wc_id)


def test_address_list_example_with_its_empty_string_lists() -> None:
    (doc,) = examples("获取通讯录列表接口")
    assert AddressList.parse(doc["data"]) == AddressList(friends=[], chatrooms=[], ghs=[], others=[])


def test_query_login_wx_example() -> None:
    (doc,) = examples("查询账号中在线的微信列表")
    assert [LoginWx.parse(d) for d in doc["data"]] == [LoginWx("wxid_i6qsbbjenju2", "72223018-7f2a-4f4f-bfa3-26e47dbd61")]


def test_failure_examples_use_the_string_code_1001() -> None:
    for section in ("获取联系人信息接口", "发送文本消息", "初始化通讯录列表接口", "获取通讯录列表接口"):
        (doc,) = examples(section, "错误返回示例")
        assert doc == {"message": "失败", "code": "1001", "data": None}
