"""The E云 优化版 messageType catalogue (../shared/reference/eyun-callbacks.md §3).

Codes are 5-digit strings. A private-chat code 600xx has the group variant 800xx (+20000). Unknown codes
are not errors: they are archived as kind "unknown", since parsing never drops a type it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["CATALOGUE", "Kind"]


class Kind(str, Enum):
    """What a callback is about; decides where the stream processors send it."""

    MESSAGE = "message"            # a chat message, private or group (6xxxx / 8xxxx, 90001)
    FRIEND_EVENT = "friend_event"  # 30001 friend request, 65xxx
    GROUP_EVENT = "group_event"    # 85xxx
    ACCOUNT_EVENT = "account_event"  # 30000 offline, 30002/30003 async completions, 95001
    TEST = "test"                  # 00000, sent when the callback URL is set
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MessageType:
    code: str
    name: str
    kind: Kind
    group: bool = False


_CHAT = {
    "01": "text", "02": "image", "03": "video", "04": "voice", "05": "card", "06": "emoji", "07": "link",
    "08": "file", "09": "file_sent", "10": "mini_program", "11": "chat_history", "12": "voice_call",
    "13": "voice_call_hangup", "14": "quote", "15": "transfer", "16": "red_packet", "17": "channels",
    "18": "recall", "19": "pat", "20": "location", "21": "music", "22": "group_invite", "999": "other",
}
_PRIVATE_ONLY = {"13", "22"}

_EVENTS = {
    "00000": ("test", Kind.TEST),
    "30000": ("offline", Kind.ACCOUNT_EVENT),
    "30001": ("friend_request", Kind.FRIEND_EVENT),
    "30002": ("video_download_done", Kind.ACCOUNT_EVENT),
    "30003": ("moments_video_sent", Kind.ACCOUNT_EVENT),
    "65001": ("friend_info_changed", Kind.FRIEND_EVENT),
    "65002": ("friend_verification_on", Kind.FRIEND_EVENT),
    "65003": ("friend_rejects_messages", Kind.FRIEND_EVENT),
    "65004": ("friend_deleted", Kind.FRIEND_EVENT),
    "85001": ("group_info_changed", Kind.GROUP_EVENT),
    "85002": ("removed_from_group", Kind.GROUP_EVENT),
    "85003": ("member_kicked", Kind.GROUP_EVENT),
    "85004": ("group_dissolved", Kind.GROUP_EVENT),
    "85005": ("group_renamed", Kind.GROUP_EVENT),
    "85006": ("admin_added", Kind.GROUP_EVENT),
    "85007": ("admin_removed", Kind.GROUP_EVENT),
    "85008": ("member_invited", Kind.GROUP_EVENT),
    "85009": ("member_joined_by_qr", Kind.GROUP_EVENT),
    "85010": ("owner_changed", Kind.GROUP_EVENT),
    "85011": ("announcement", Kind.GROUP_EVENT),
    "85012": ("group_todo", Kind.GROUP_EVENT),
    "85013": ("invite_confirmation", Kind.GROUP_EVENT),
    "85014": ("invite_verification", Kind.GROUP_EVENT),
    "85015": ("left_group", Kind.GROUP_EVENT),
    "90001": ("official_account_article", Kind.MESSAGE),
    "95001": ("official_account_unfollowed", Kind.ACCOUNT_EVENT),
}


def _catalogue() -> dict[str, MessageType]:
    table: dict[str, MessageType] = {}
    for suffix, name in _CHAT.items():
        private = "60" + suffix.zfill(3) if suffix != "999" else "60999"
        table[private] = MessageType(private, name, Kind.MESSAGE, group=False)
        if suffix not in _PRIVATE_ONLY:
            group = "80" + suffix.zfill(3) if suffix != "999" else "80999"
            table[group] = MessageType(group, name, Kind.MESSAGE, group=True)
    for code, (name, kind) in _EVENTS.items():
        table[code] = MessageType(code, name, kind, group=kind is Kind.GROUP_EVENT)
    return table


CATALOGUE: dict[str, MessageType] = _catalogue()


def lookup(code: str) -> MessageType:
    """The catalogued type, or an "unknown" one that keeps the code (group if it looks like 8xxxx)."""
    known = CATALOGUE.get(code)
    if known is not None:
        return known
    return MessageType(code, "unknown", Kind.UNKNOWN, group=code.startswith("8"))
