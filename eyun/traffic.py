"""Realistic E云 callback traffic, deterministic under a seed, with the truth about it.

What real traffic does to an archive, and this generator does on purpose: several accounts in private and
group chats with the type mix of real chats; re-pushed history (the same newMsgId again, soon or long
after, sometimes under a new wId after a re-login); out-of-order delivery; sensitive words, plainly and
in evasive spellings; malformed bodies. The Summary counts what an archive must end up with, so tests and
`wxarchive up --demo` can compare the archive against it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from eyun.directory import Account, Directory

__all__ = ["DEFAULT_START", "DEMO_KEYWORDS", "EVASIONS", "Summary", "TrafficConfig", "TrafficGenerator"]

DEFAULT_START = "2026-11-01T09:00:00+08:00"

# (word, category, severity): the demo list `wxarchive up --demo` loads; evasions below spell them out
DEMO_KEYWORDS: list[tuple[str, str, int]] = [
    ("赌博", "gambling", 3), ("网赌", "gambling", 3), ("代开发票", "fraud", 3), ("刷单", "fraud", 2),
    ("办证", "fraud", 2), ("高利贷", "finance", 2), ("内幕消息", "insider", 3), ("裸聊", "porn", 3),
    ("加微信领红包", "spam", 1), ("QQ群", "spam", 1),
]
_TRADITIONAL = str.maketrans({"赌": "賭", "网": "網", "开": "開", "发": "發", "单": "單", "办": "辦", "证": "證",
                              "贷": "貸", "内": "內", "领": "領", "红": "紅"})
_FULLWIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})
EVASIONS = ("plain", "spaced", "punctuated", "zero_width", "traditional", "full_width")

_PHRASES = ["明天上午十点开会，别迟到", "收到，我马上处理", "报价单已经发你邮箱了", "这个方案大家再看看", "今晚聚餐在老地方",
            "周报请在周五前提交", "客户那边反馈还不错", "好的👌", "哈哈哈😂", "辛苦了🙏", "下午三点电话沟通一下", "合同明天寄出",
            "请大家注意保密", "新品下周上线", "这个价格还能再谈吗", "发票抬头写公司全称", "我在路上，十分钟到", "OK",
            "会议纪要见附件", "感谢支持！", "[微笑]", "收到👍🏽", "路上注意安全", "数据已经更新到表格里了"]
_SENSITIVE_TEMPLATES = ["有需要{w}的私聊我", "{w}了解一下，稳赚", "朋友介绍的{w}，靠谱", "谁有{w}的渠道？", "专业{w}，价格优惠"]

# messageType suffix (600xx/800xx) and weight: roughly the mix of busy work chats
_MIX: list[tuple[str, float]] = [
    ("01", 62.0), ("02", 10.0), ("06", 6.0), ("04", 4.0), ("14", 4.0), ("07", 3.0), ("08", 2.0), ("03", 2.0),
    ("18", 1.0), ("19", 1.0), ("999", 1.0), ("20", 0.5), ("05", 0.5), ("10", 0.5), ("11", 0.5), ("16", 0.5),
    ("17", 0.5), ("15", 0.3), ("21", 0.3),
]
_MALFORMED = ["not_json", "truncated", "missing_wcId", "missing_messageType", "data_not_object", "float_newMsgId",
              "wcId_not_string", "empty", "array", "bad_utf8"]


@dataclass
class Summary:
    """The truth about a generated run. JSON keys are part of the simulator's interface."""

    seed: int
    sent: int = 0
    duplicates: int = 0
    late_duplicates: int = 0
    relogin_duplicates: int = 0
    malformed: int = 0
    expected_unique_messages: int = 0
    expected_unique_events: int = 0
    expected_recalls: int = 0
    sensitive_messages: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    sensitive_by_category: Counter[str] = field(default_factory=Counter)
    sensitive_by_evasion: Counter[str] = field(default_factory=Counter)
    malformed_by_reason: Counter[str] = field(default_factory=Counter)
    accounts: list[str] = field(default_factory=list)
    http: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            out[name] = dict(sorted(value.items())) if isinstance(value, Counter) else value
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"

    def to_text(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in self.by_type.most_common(8))
        lines = [
            f"sent {self.sent} callbacks: {self.expected_unique_messages} unique messages, "
            f"{self.expected_unique_events} unique events, {self.duplicates} duplicates "
            f"({self.late_duplicates} late, {self.relogin_duplicates} after a re-login), {self.malformed} malformed",
            f"types: {top}",
            f"sensitive: {self.sensitive_messages} messages; by category "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.sensitive_by_category.items())) or "none"),
        ]
        if self.http:
            lines.append("http answers: " + ", ".join(f"{k} {v}" for k, v in sorted(self.http.items())))
        return "\n".join(lines)


@dataclass(frozen=True)
class TrafficConfig:
    count: int = 1000
    seed: int = 1
    accounts: int = 3
    duplicate_rate: float = 0.1
    late_duplicate_share: float = 0.3
    relogin_share: float = 0.3
    malformed_rate: float = 0.01
    sensitive_rate: float = 0.03
    event_rate: float = 0.03
    group_share: float = 0.6
    reorder_window: int = 4
    start: str = DEFAULT_START

    def validate(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")
        for name in ("duplicate_rate", "malformed_rate", "sensitive_rate", "event_rate", "group_share",
                     "late_duplicate_share", "relogin_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.duplicate_rate + self.malformed_rate >= 1.0:
            raise ValueError("duplicate and malformed rates leave no room for unique messages")
        if self.accounts < 1:
            raise ValueError("accounts must be at least 1")
        datetime.fromisoformat(self.start)


@dataclass
class _Record:
    doc: dict[str, Any]
    kind: str              # "message" or an event kind
    group_id: str = ""


class TrafficGenerator:
    def __init__(self, config: TrafficConfig, directory: Directory | None = None) -> None:
        config.validate()
        self.config = config
        self.directory = directory or Directory.generate(seed=config.seed, accounts=config.accounts)
        self.rng = random.Random(f"traffic-{config.seed}")
        self.clock = int(datetime.fromisoformat(config.start).timestamp())
        self.msg_id = 1_685_074_592
        self.history: dict[str, list[dict[str, Any]]] = {}  # conversation -> its messages' data
        self.summary = Summary(seed=config.seed, accounts=[a.wc_id for a in self.directory.accounts])
        self._codes, self._weights = zip(*_MIX)

    def bodies(self) -> list[bytes]:
        """The whole run in delivery order."""
        cfg, rng = self.config, self.rng
        n_dup = round(cfg.count * cfg.duplicate_rate)
        n_bad = round(cfg.count * cfg.malformed_rate)
        n_unique = cfg.count - n_dup - n_bad
        originals: list[bytes] = []
        for account in self.directory.accounts[:n_unique]:
            originals.append(self._body(self._test_callback(account)))
        n_tests = len(originals)
        while len(originals) < n_unique:
            originals.append(self._body(self._next_record()))
        stream = list(originals)
        late: list[bytes] = []
        eligible = list(range(n_tests, len(originals))) or list(range(len(originals)))
        for _ in range(n_dup if originals else 0):
            source = rng.choice(eligible)
            body = originals[source]
            if rng.random() < cfg.relogin_share:
                body = self._relogin_copy(body)
                self.summary.relogin_duplicates += 1
            if rng.random() < cfg.late_duplicate_share:
                late.append(body)
                self.summary.late_duplicates += 1
            else:
                stream.insert(min(len(stream), source + 1 + rng.randint(0, 50)), body)
        for _ in range(n_bad):
            stream.insert(rng.randint(0, len(stream)), self._malformed())
        stream.extend(late)  # history re-pushed long after the originals
        self._reorder(stream)
        self.summary.sent = len(stream)
        self.summary.duplicates = n_dup if originals else 0
        self.summary.malformed = n_bad
        return stream

    # -- records ----------------------------------------------------------------------------------------

    def _body(self, record: _Record) -> bytes:
        kind = record.kind
        self.summary.by_kind[kind] += 1
        self.summary.by_type[record.doc["messageType"]] += 1
        if kind == "message":
            self.summary.expected_unique_messages += 1
        else:
            self.summary.expected_unique_events += 1
        return orjson.dumps(record.doc)

    def _tick(self) -> int:
        self.clock += self.rng.choice([0, 1, 1, 2, 3, 5, 8, 13, 30])
        self.msg_id += 1
        return self.clock

    def _envelope(self, account: Account, code: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"wcId": account.wc_id, "account": account.platform_account, "messageType": code, "data": data}

    def _test_callback(self, account: Account) -> _Record:
        return _Record(self._envelope(account, "00000", {}), "test")

    def _next_record(self) -> _Record:
        rng = self.rng
        account = rng.choice(self.directory.accounts)
        if rng.random() < self.config.event_rate:
            return self._event(account)
        suffix = rng.choices(self._codes, self._weights)[0]
        in_group = rng.random() < self.config.group_share
        group = rng.choice(account.groups) if in_group else None
        if group is not None and suffix in ("13", "22"):
            group = None  # private-only types
        peer = rng.choice(account.friends)
        self_sent = rng.random() < 0.25
        if group is not None:
            sender = account.wc_id if self_sent else rng.choice([m for m in group.members if m != account.wc_id])
            conversation, to_user = group.id, account.wc_id
        else:
            sender = account.wc_id if self_sent else peer
            conversation, to_user = peer, (peer if self_sent else account.wc_id)
        code = ("80" if group else "60") + (suffix.zfill(3) if suffix != "999" else "999")
        data: dict[str, Any] = {
            "wId": account.w_id, "fromUser": sender, "toUser": to_user, "msgId": self.msg_id,
            "newMsgId": rng.randint(10**17, 2**64 - 1), "self": self_sent, "timestamp": self._tick(),
        }
        if group is not None:
            data["fromGroup"] = group.id
            data["atlist"] = []
        content = self._content(suffix, data, conversation, group is not None)
        if group is not None and content.startswith("<") and rng.random() < 0.5:
            content = f"{sender}:\n{content}"  # 原生版-style sender prefix on group XML
        data["content"] = content
        self.history.setdefault(conversation, []).append(data)
        return _Record(self._envelope(account, code, data), "message", group.id if group else "")

    def _content(self, suffix: str, data: dict[str, Any], conversation: str, in_group: bool) -> str:
        rng = self.rng
        earlier = self.history.get(conversation, [])
        if suffix == "01":
            text = rng.choice(_PHRASES)
            if rng.random() < self.config.sensitive_rate:
                text = self._sensitive_text()
            if in_group and rng.random() < 0.1:
                target = data["fromGroup"]
                member = rng.choice(self.directory.group(target)[1].members)  # type: ignore[index]
                data["atlist"] = [member]
                text = f"@{self.directory.people[member].nickName}\u2005{text}"
            return text
        if suffix == "14" and earlier:
            quoted = rng.choice(earlier[-20:])
            data["title"] = rng.choice(_PHRASES)
            quoted_text = quoted.get("content", "") if not str(quoted.get("content", "")).startswith("<") else "[图片]"
            return _appmsg(57, data["title"], inner=f"<refermsg><type>1</type><svrid>{quoted['newMsgId']}</svrid>"
                           f"<fromusr>{quoted['fromUser']}</fromusr><chatusr>{quoted['fromUser']}</chatusr>"
                           f"<displayname>{self._nick(quoted['fromUser'])}</displayname>"
                           f"<content>{_xml_escape(quoted_text)}</content></refermsg>")
        if suffix == "18" and earlier:
            target = rng.choice(earlier[-10:])
            self.summary.expected_recalls += 1
            return (f'<sysmsg type="revokemsg"><revokemsg><session>{conversation}</session><msgid>{target["msgId"]}</msgid>'
                    f"<newmsgid>{target['newMsgId']}</newmsgid><replacemsg><![CDATA[\"{self._nick(target['fromUser'])}\" "
                    f"撤回了一条消息]]></replacemsg></revokemsg></sysmsg>")
        return self._media(suffix if suffix not in ("14", "18") else "01", data)

    def _media(self, suffix: str, data: dict[str, Any]) -> str:
        rng = self.rng
        md5 = f"{rng.getrandbits(128):032x}"
        if suffix == "02":
            data["img"] = "/9j/4AAQSkZJRgABAQ" + md5[:16]
            return f'<?xml version="1.0"?>\n<msg><img aeskey="{md5[:16]}" length="{rng.randint(10**4, 10**6)}" md5="{md5}" /></msg>'
        if suffix == "03":
            return (f'<?xml version="1.0"?>\n<msg><videomsg length="{rng.randint(10**5, 10**7)}" '
                    f'playlength="{rng.randint(1, 120)}" md5="{md5}" /></msg>')
        if suffix == "04":
            length = rng.randint(1000, 60000)
            data.update(bufId="0", length=length // 3, voiceLength=length)
            return f'<msg><voicemsg length="{length // 3}" voicelength="{length}" bufid="0" /></msg>'
        if suffix == "05":
            person = rng.choice(list(self.directory.people.values()))
            return f'<?xml version="1.0"?>\n<msg username="{person.userName}" nickname="{_xml_escape(person.nickName)}" />'
        if suffix == "06":
            return f'<msg><emoji md5="{md5}" len="{rng.randint(1000, 90000)}" /></msg>'
        if suffix == "07":
            title = rng.choice(["季度合规培训通知", "行业周报第42期", "产品发布会回顾", "年度财报解读"])
            return _appmsg(5, title, des="点击查看详情", url=f"https://mp.weixin.qq.com/s/{md5[:12]}")
        if suffix == "08":
            name = rng.choice(["销售报表", "合同", "会议纪要", "报价单", "发票清单"]) + rng.choice([".xlsx", ".pdf", ".docx"])
            return _appmsg(6, name, inner=f"<appattach><totallen>{rng.randint(10**3, 10**7)}</totallen>"
                           f"<fileext>{name.rsplit('.', 1)[1]}</fileext></appattach>")
        if suffix == "10":
            return _appmsg(33, rng.choice(["滴滴出行", "美团外卖", "腾讯文档"]), inner="<weappinfo><appid>wx1234</appid></weappinfo>")
        if suffix == "11":
            return _appmsg(19, "群聊的聊天记录", des="张三: 今晚加班\n李四: 收到")
        if suffix == "15":
            return _appmsg(2000, "微信转账", des=f"收到转账{rng.randint(1, 500)}.00元")
        if suffix == "16":
            return _appmsg(2001, "微信红包", des="恭喜发财，大吉大利")
        if suffix == "17":
            return _appmsg(51, "", inner="<finderFeed><nickname>财经观察</nickname><desc>今日市场解读</desc></finderFeed>")
        if suffix == "19":
            return (f'<sysmsg type="pat"><pat><fromusername>{data["fromUser"]}</fromusername><pattedusername>{data["toUser"]}'
                    f"</pattedusername><template><![CDATA[\"${{{data['fromUser']}}}\" 拍了拍我]]></template></pat></sysmsg>")
        if suffix == "20":
            return '<?xml version="1.0"?>\n<msg><location x="22.54" y="114.05" label="深圳市福田区深南大道" poiname="平安金融中心" /></msg>'
        if suffix == "21":
            return _appmsg(3, "晴天", des="周杰伦", url="https://y.qq.com/n/ryqq/songDetail/0039MnYb0qxYhV")
        if suffix == "999":
            return "你已添加了" + self._nick(data["fromUser"]) + "，现在可以开始聊天了。"
        return rng.choice(_PHRASES)

    def _sensitive_text(self) -> str:
        rng = self.rng
        word, category, _ = rng.choice(DEMO_KEYWORDS)
        evasion = rng.choice(EVASIONS)
        if evasion == "spaced":
            shown = " ".join(word)
        elif evasion == "punctuated":
            shown = rng.choice(["-", ".", "*", "、"]).join(word)
        elif evasion == "zero_width":
            shown = "\u200b".join(word)
        elif evasion == "traditional":
            shown = word.translate(_TRADITIONAL)
        elif evasion == "full_width":
            shown = word.translate(_FULLWIDTH)
        else:
            shown = word
        self.summary.sensitive_messages += 1
        self.summary.sensitive_by_category[category] += 1
        self.summary.sensitive_by_evasion[evasion] += 1
        return rng.choice(_SENSITIVE_TEMPLATES).format(w=shown)

    def _event(self, account: Account) -> _Record:
        rng = self.rng
        group = rng.choice(account.groups)
        pick = rng.random()
        ts = self._tick()
        if pick < 0.5:  # a member joins: carries a newMsgId like a message
            member = rng.choice(group.members)
            data = {"wId": account.w_id, "fromGroup": group.id, "fromUser": member, "toUser": account.wc_id,
                    "msgId": self.msg_id, "newMsgId": rng.randint(10**17, 2**64 - 1), "msgType": 10002, "self": False,
                    "timestamp": ts, "content": f"\"{self._nick(group.owner)}\"邀请\"{self._nick(member)}\"加入了群聊"}
            return _Record(self._envelope(account, "85008", data), "group_event", group.id)
        if pick < 0.8:  # group info changed: no ids (hash identity); the member count makes each one distinct
            data = {"wId": account.w_id, "userName": group.id, "nickName": group.name, "chatRoomOwner": group.owner,
                    "memberCount": len(group.members), "timestamp": ts}
            return _Record(self._envelope(account, "85001", data), "group_event", group.id)
        if pick < 0.95:
            friend = rng.choice(account.friends)
            data = {"wId": account.w_id, "userName": friend, "nickName": self._nick(friend), "timestamp": ts}
            return _Record(self._envelope(account, "65001", data), "friend_event")
        return _Record(self._envelope(account, "30000", {"wId": account.w_id, "content": "账号已离线", "timestamp": ts}),
                       "account_event")

    # -- duplicates, malformed, ordering ---------------------------------------------------------------

    def _relogin_copy(self, body: bytes) -> bytes:
        """The same message re-pushed after a re-login: same newMsgId, the account's new wId."""
        doc = orjson.loads(body)
        account = self.directory.account(doc["wcId"])
        if account is not None and isinstance(doc.get("data"), dict) and "wId" in doc["data"]:
            doc["data"]["wId"] = account.relogin_w_id
        return orjson.dumps(doc)

    def _malformed(self) -> bytes:
        rng = self.rng
        reason = rng.choice(_MALFORMED)
        self.summary.malformed_by_reason[reason] += 1
        account = rng.choice(self.directory.accounts)
        good: dict[str, Any] = {
            "wcId": account.wc_id, "messageType": "60001",
            "data": {"wId": account.w_id, "fromUser": account.friends[0], "toUser": account.wc_id, "content": "hi",
                     "newMsgId": rng.randint(10**17, 2**63), "timestamp": self.clock}}
        if reason == "not_json":
            return b"wcId=" + account.wc_id.encode() + b"&messageType=60001"
        if reason == "truncated":
            return orjson.dumps(good)[: rng.randint(5, 40)]
        if reason == "missing_wcId":
            del good["wcId"]
        elif reason == "missing_messageType":
            del good["messageType"]
        elif reason == "data_not_object":
            good["data"] = "hi"
        elif reason == "wcId_not_string":
            good["wcId"] = 12345
        elif reason == "empty":
            return b""
        elif reason == "array":
            return b"[" + orjson.dumps(good) + b"]"
        elif reason == "bad_utf8":
            return orjson.dumps(good).replace(b'"hi"', b'"\xff\xfe"')
        elif reason == "float_newMsgId":
            return orjson.dumps(good).replace(str(good["data"]["newMsgId"]).encode(), b"1.4974741182614848e18")
        return orjson.dumps(good)

    def _reorder(self, stream: list[bytes]) -> None:
        """Out-of-order delivery: swap neighbours up to `reorder_window` apart."""
        window = self.config.reorder_window
        if window < 1:
            return
        for i in range(0, len(stream) - 1, 3):
            j = min(len(stream) - 1, i + self.rng.randint(1, window))
            stream[i], stream[j] = stream[j], stream[i]

    def _nick(self, wxid: str) -> str:
        person = self.directory.people.get(wxid)
        return person.nickName if person else wxid


def _appmsg(app_type: int, title: str, des: str = "", url: str = "", inner: str = "") -> str:
    return (f'<?xml version="1.0"?>\n<msg><appmsg appid="" sdkver="0"><title>{_xml_escape(title)}</title>'
            f"<des>{_xml_escape(des)}</des><type>{app_type}</type><url>{url}</url>{inner}</appmsg></msg>")


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
