"""A sensitive-word rule as the keyword topic carries it: the worker matches with it, the CLI and the read side
(the SCRM's doSave, retroactive rescans) write and read it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeywordRule"]


@dataclass(frozen=True)
class KeywordRule:
    word: str
    category: str = "default"
    severity: int = 1
    mode: str = "fuzzy"                    # "fuzzy": folded match; "strict": as written
    allow: bool = False                    # an allow-list phrase, not a sensitive word
    pinyin: bool = False                   # also match the word spelled in pinyin ("dubo" for 赌博)
    groups: tuple[str, ...] = ()           # only in these groups (empty: everywhere) ...
    accounts: tuple[str, ...] = ()         # ... or only for these archived accounts

    @property
    def key(self) -> str:
        return f"{'allow' if self.allow else 'deny'}:{self.mode}:{self.word}"

    def applies(self, account: str, conversation: str) -> bool:
        if not self.groups and not self.accounts:
            return True
        return conversation in self.groups or account in self.accounts
