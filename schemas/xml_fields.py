"""The searchable and linkable fields inside WeChat's XML message bodies.

Image, video, voice, link, file, quote, recall and other messages carry XML in `content`. A compliance
search needs the human text in it (titles, descriptions, file names, quoted text) and the archive needs its
links (the quoted and the recalled newMsgId). Group XML may start with a "sender:\\n" line, which is
split off first. XML that does not parse yields no fields rather than an error: the raw body keeps it all.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

_SENDER_PREFIX = re.compile(r"^([A-Za-z0-9_.@-]{1,80}):\n(?=\s*<)")


@dataclass(slots=True)
class XmlFields:
    title: str = ""
    description: str = ""
    url: str = ""
    file_name: str = ""
    app_type: int | None = None
    quoted_new_msg_id: int | None = None
    quoted_text: str = ""
    quoted_sender: str = ""
    recalled_new_msg_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def split_sender_prefix(content: str) -> tuple[str | None, str]:
    """("wxid_sender", xml) for group XML that starts with "wxid_sender:\\n", else (None, content)."""
    match = _SENDER_PREFIX.match(content)
    if match is None:
        return None, content
    return match.group(1), content[match.end():]


def looks_like_xml(content: str) -> bool:
    return content.lstrip().startswith("<")


def extract(content: str, *, quotes: bool = True) -> XmlFields:
    """The fields of `content`. `quotes=False` leaves a <refermsg> alone: a quoted message is read one level
    deep only (its title), so a quote of a quote of … cannot recurse as deep as the body allows."""
    out = XmlFields()
    try:
        root = ET.fromstring(content.strip())
    except ET.ParseError:
        return out
    if root.tag == "sysmsg":
        _sysmsg(root, out)
        return out
    appmsg = root.find("appmsg")
    if appmsg is not None:
        _appmsg(appmsg, out, quotes)
    for tag, attrs in (("location", ("label", "poiname")), ("emoji", ("md5",)), ("img", ("md5",)),
                       ("videomsg", ("md5", "playlength")), ("voicemsg", ("voicelength",))):
        node = root if root.tag == tag else root.find(tag)
        if node is not None:
            out.extra.update({a: node.get(a, "") for a in attrs if node.get(a)})
    if root.tag == "msg" and root.get("username"):  # business card: the card's person is the text
        out.title = root.get("nickname", "")
        out.extra["card_username"] = root.get("username", "")
    if "poiname" in out.extra or "label" in out.extra:
        out.title = out.extra.get("poiname", "")
        out.description = out.extra.get("label", "")
    return out


def _text(node: ET.Element | None, path: str) -> str:
    if node is None:
        return ""
    found = node.find(path)
    return (found.text or "").strip() if found is not None else ""


def _int(text: str) -> int | None:
    """An unsigned 64-bit id in ASCII digits, else None. Not str.isdigit() alone: it takes "²" and "١٢٣"."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 and int(text) < 2**64 else None


def _appmsg(appmsg: ET.Element, out: XmlFields, quotes: bool) -> None:
    out.title = _text(appmsg, "title")
    out.description = _text(appmsg, "des")
    out.url = _text(appmsg, "url")
    out.app_type = _int(_text(appmsg, "type"))
    if out.app_type == 6:  # file: the title is the file name
        out.file_name = out.title
        ext = _text(appmsg, "appattach/fileext")
        if ext:
            out.extra["fileext"] = ext
    refer = appmsg.find("refermsg") if quotes else None
    if refer is not None:
        out.quoted_new_msg_id = _int(_text(refer, "svrid"))
        out.quoted_sender = _text(refer, "chatusr") or _text(refer, "fromusr")
        quoted = _text(refer, "content")
        # a quoted non-text message is itself XML; its own title is the readable part
        out.quoted_text = extract(quoted, quotes=False).title if looks_like_xml(quoted) else quoted
        out.extra["quoted_display_name"] = _text(refer, "displayname")
    source = _text(appmsg, "sourcedisplayname") or _text(appmsg, "appinfo/appname")
    if source:
        out.extra["source"] = source
    pay = appmsg.find("wcpayinfo")
    if pay is not None:
        for tag in ("feedesc", "pay_memo", "sendertitle", "receivertitle"):
            value = _text(pay, tag)
            if value:
                out.extra[tag] = value
        if not out.description:
            out.description = out.extra.get("pay_memo") or out.extra.get("sendertitle", "")
    finder = appmsg.find("finderFeed")
    if finder is not None:
        out.title = out.title or _text(finder, "nickname")
        out.description = out.description or _text(finder, "desc")


def _sysmsg(root: ET.Element, out: XmlFields) -> None:
    kind = root.get("type", "")
    out.extra["sysmsg_type"] = kind
    if kind == "revokemsg":
        out.recalled_new_msg_id = _int(_text(root, "revokemsg/newmsgid"))
        out.description = _text(root, "revokemsg/replacemsg")
    elif kind == "pat":
        out.extra["from"] = _text(root, "pat/fromusername")
        out.extra["patted"] = _text(root, "pat/pattedusername")
        out.description = _text(root, "pat/template")
    else:
        out.description = "".join(root.itertext()).strip()[:500]
