"""A generated WeChat world: accounts, their friends, their groups and the groups' members.

The fake E云 server answers lookups from it and the traffic simulator writes callbacks about it; both build
it from the same seed, so every name a callback carries is one the fake API can resolve. Some groups are
deliberately not saved to the address book, as in real life (reference §5: getAddressList omits them).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from schemas.eyun_api import ChatRoomInfo, ChatRoomMember, Contact

__all__ = ["Directory"]

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红梅鑫波斌宇浩凯健俊帆"
_NICK_WORDS = ["追风少年", "小确幸", "阳光", "Sunny", "Leo", "老司机", "快乐每一天", "花开半夏", "Mia", "Jack", "静待花开", "奋斗者"]
_GROUP_NAMES = ["项目A组", "销售一部", "客户服务群", "家长交流群", "周末羽毛球", "产品需求讨论", "2026届校友会", "华南区渠道",
                "采购对接群", "技术支持", "读书会", "团购福利群", "物业业主群", "投资交流", "行业资讯分享", "新品内测"]
_PROVINCES = [("广东", "深圳"), ("广东", "广州"), ("浙江", "杭州"), ("上海", "上海"), ("北京", "北京"), ("四川", "成都")]


def _wxid(rng: random.Random) -> str:
    return "wxid_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(14))


def _name(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(_NICK_WORDS) + str(rng.randint(1, 999))
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


@dataclass
class Group:
    id: str
    name: str
    owner: str
    members: list[str]
    saved: bool  # in the address book (getAddressList lists it)


@dataclass
class Account:
    wc_id: str
    w_id: str
    platform_account: str
    nickname: str
    relogin_w_id: str = ""  # the login instance after a re-login; history re-pushed then carries it
    friends: list[str] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    official_accounts: list[str] = field(default_factory=list)


@dataclass
class Directory:
    accounts: list[Account]
    people: dict[str, Contact]

    @classmethod
    def generate(cls, seed: int = 1, accounts: int = 3, friends: int = 40, groups: int = 8) -> Directory:
        rng = random.Random(f"directory-{seed}")
        people: dict[str, Contact] = {}

        def person() -> str:
            wxid = _wxid(rng)
            province, city = rng.choice(_PROVINCES)
            nick = _name(rng)
            head = f"http://wx.qlogo.cn/mmhead/{uuid.UUID(int=rng.getrandbits(128)).hex}"
            people[wxid] = Contact(
                userName=wxid, nickName=nick, remark=rng.choice(["", "", nick + "(客户)", "王总", "财务-" + nick]),
                signature=rng.choice(["", "努力工作，快乐生活", "Stay hungry", "勿扰"]), sex=rng.choice([0, 1, 2]),
                aliasName=rng.choice(["", wxid[5:12]]), country="CN", province=province, city=city,
                bigHead=head + "/0", smallHead=head + "/132", labelList="",
                v1=f"v1_{uuid.UUID(int=rng.getrandbits(128)).hex}@stranger",
            )
            return wxid

        made: list[Account] = []
        for n in range(accounts):
            me = person()
            account = Account(wc_id=me, w_id=str(uuid.UUID(int=rng.getrandbits(128))),
                              platform_account=f"172000000{n:02d}", nickname=people[me].nickName,
                              relogin_w_id=str(uuid.UUID(int=rng.getrandbits(128))))
            account.friends = [person() for _ in range(friends)]
            account.official_accounts = [f"gh_{rng.getrandbits(48):012x}" for _ in range(2)]
            for g in range(groups):
                strangers = [person() for _ in range(rng.randint(2, 12))]
                members = [me, *rng.sample(account.friends, k=min(len(account.friends), rng.randint(2, 10))), *strangers]
                group_id = f"{rng.randint(10**10, 10**11 - 1)}@chatroom"
                name = _GROUP_NAMES[(n * groups + g) % len(_GROUP_NAMES)]
                people[group_id] = Contact(userName=group_id, nickName=name, smallHead=f"http://wx.qlogo.cn/mmcrhead/{g}/0")
                account.groups.append(Group(group_id, name, owner=rng.choice(members), members=members,
                                            saved=g % 3 != 2))
            made.append(account)
        return cls(made, people)

    def account(self, wc_id: str) -> Account | None:
        return next((a for a in self.accounts if a.wc_id == wc_id), None)

    def account_by_w_id(self, w_id: str) -> Account | None:
        """The account a login instance belongs to: its current one, or the re-login one in traffic."""
        return next((a for a in self.accounts if w_id and w_id in (a.w_id, a.relogin_w_id)), None)

    def group(self, group_id: str) -> tuple[Account, Group] | None:
        for account in self.accounts:
            for group in account.groups:
                if group.id == group_id:
                    return account, group
        return None

    def room_info(self, group_id: str) -> ChatRoomInfo | None:
        found = self.group(group_id)
        if found is None:
            return None
        _, group = found
        members = self.room_members(group_id)
        return ChatRoomInfo(chatRoomId=group.id, userName=group.id, nickName=group.name, chatRoomOwner=group.owner,
                            memberCount=len(group.members), smallHeadImgUrl=self.people[group.id].smallHead,
                            chatRoomMembers=members)

    def room_members(self, group_id: str) -> list[ChatRoomMember]:
        found = self.group(group_id)
        if found is None:
            return []
        _, group = found
        return [ChatRoomMember(userName=m, nickName=self.people[m].nickName, displayName="",
                               inviterUserName=group.owner, isManage=m == group.owner, chatRoomId=group.id,
                               chatRoomOwner=group.owner, memberCount=len(group.members),
                               smallHeadImgUrl=self.people[m].smallHead)
                for m in group.members]
