"""The sensitive-word list as it lives on the compacted topic PREFIX.keywords, and as a worker holds it.

Each rule is one record: key = the rule's key as a JSON string ("deny:fuzzy:赌博"), value = the rule as a
JSON object, or null to remove it (a tombstone, which compaction eventually drops). JSON keys and values
are what a faust GlobalTable with the json serializer reads, so workers can hold the whole list as one.
A worker applies changes to its rules and compiles a new matcher off to the side, then swaps it in whole:
a batch being matched keeps the matcher it started with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import orjson

from moderation.matcher import KeywordMatcher
from schemas.keywords import KeywordRule

__all__ = ["KeywordSet"]

MODES = ("fuzzy", "strict")


def rule_to_record(rule: KeywordRule) -> tuple[bytes, bytes]:
    value = {"word": rule.word, "category": rule.category, "severity": rule.severity, "mode": rule.mode,
             "allow": rule.allow, "pinyin": rule.pinyin, "groups": list(rule.groups), "accounts": list(rule.accounts),
             "updated_ms": int(time.time() * 1000)}
    return orjson.dumps(rule.key), orjson.dumps(value)


def removal_record(rule: KeywordRule) -> tuple[bytes, None]:
    return orjson.dumps(rule.key), None


def rule_from_value(value: dict[str, Any]) -> KeywordRule:
    """A rule from its record; a ValueError names what is wrong with a record written by hand."""
    word = value.get("word")
    if not isinstance(word, str) or not word.strip():
        raise ValueError("a keyword record needs a non-empty word")
    mode = value.get("mode", "fuzzy")
    if mode not in MODES:
        raise ValueError(f"mode must be fuzzy or strict, got {mode!r}")
    severity = value.get("severity", 1)
    if not isinstance(severity, int) or isinstance(severity, bool) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be a whole number from 1 to 5, got {severity!r}")
    return KeywordRule(word=word.strip(), category=str(value.get("category") or "default"), severity=severity, mode=mode,
                       allow=bool(value.get("allow", False)), pinyin=bool(value.get("pinyin", False)),
                       groups=tuple(value.get("groups") or ()),
                       accounts=tuple(value.get("accounts") or ()))


def parse_rule_line(line: str) -> KeywordRule | None:
    """One line of an import file: `word[,category[,severity[,mode]]]` with mode fuzzy, strict or pinyin
    (fuzzy plus pinyin spellings), or `allow:phrase[,mode]`; # starts a comment."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("allow:"):
        phrase, _, mode = text[len("allow:"):].partition(",")
        return rule_from_value({"word": phrase, "allow": True, "mode": mode.strip() or "fuzzy"})
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 4:
        raise ValueError("too many fields: word,category,severity,mode")
    value: dict[str, Any] = {"word": parts[0]}
    if len(parts) > 1 and parts[1]:
        value["category"] = parts[1]
    if len(parts) > 2 and parts[2]:
        if not parts[2].isdigit():
            raise ValueError(f"severity must be a whole number from 1 to 5, got {parts[2]!r}")
        value["severity"] = int(parts[2])
    if len(parts) > 3 and parts[3]:
        if parts[3] == "pinyin":
            value["pinyin"] = True  # fuzzy, and spelled in pinyin too
        else:
            value["mode"] = parts[3]
    return rule_from_value(value)


class KeywordSet:
    """A worker's copy of the list: rules by key, and the matcher compiled from them."""

    def __init__(self, rules: Iterable[KeywordRule] = ()) -> None:
        self.rules: dict[str, KeywordRule] = {r.key: r for r in rules}
        self.matcher = KeywordMatcher(self.rules.values())
        self.version = 0
        self._dirty = False

    def apply(self, key: bytes, value: bytes | None) -> None:
        """One record of the keywords topic; malformed records are ignored (and counted by the caller)."""
        name = orjson.loads(key)
        if value is None:
            self._dirty |= self.rules.pop(name, None) is not None
            return
        rule = rule_from_value(orjson.loads(value))
        if self.rules.get(rule.key) != rule:
            self.rules[rule.key] = rule
            self._dirty = True

    async def refresh(self) -> bool:
        """Compile the changed list in a thread and swap it in; True if a new matcher is in place."""
        if not self._dirty:
            return False
        self._dirty = False
        rules = list(self.rules.values())
        self.matcher = await asyncio.to_thread(KeywordMatcher, rules)
        self.version += 1
        return True
