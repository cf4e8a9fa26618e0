"""Sensitive-word matching: the compiled, immutable form of a keyword list.

Engine: daachorse's charwise double-array Aho-Corasick, the fastest measured for Chinese (reference
§4.2), with overlapping output so a short word never hides a longer one. A `fuzzy` rule matches the folded
text (moderation/fold.py), so evasions are caught; a `strict` rule matches the text as written, for words
whose folding would catch too much. Allow-list phrases suppress any hit whose span they cover, in the same
space (fuzzy or strict) as the hit: "赌气" allowed keeps "赌" quiet inside it. A rule may be scoped to listed
groups or accounts. Hits carry original-text offsets and a snippet, so a moderator sees what was written.

Automata cannot be changed after building; a new list is compiled off to the side (about 10 ms per
10,000 words) and swapped in whole (moderation/keyword_set.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import daachorse

from moderation.fold import SEPARATOR, fold, fold_batch
from schemas.keywords import KeywordRule

__all__ = ["Hit", "KeywordMatcher", "Subject"]

SNIPPET_CONTEXT = 12


@dataclass(frozen=True)
class Hit:
    word: str
    category: str
    severity: int
    mode: str
    field: str           # which text of the message: text, title, description, file_name, quoted_text
    start: int           # span in that original text
    end: int
    matched: str         # the original characters, evasions and all
    snippet: str


@dataclass(frozen=True)
class Subject:
    """One text to check, and where it was said (for scoped rules)."""

    text: str
    account: str = ""
    conversation: str = ""
    field: str = "text"


@dataclass
class _Space:
    """One automaton (folded or raw text) with the rules behind each of its patterns."""

    automaton: daachorse.CharwiseDoubleArrayAhoCorasick | None
    rules: list[list[KeywordRule]] = field(default_factory=list)


def pinyin_of(word: str) -> str:
    """The word's syllables joined ("赌博" -> "dubo"). Only rules that ask for it pay for it, at compile time:
    converting every message to pinyin costs about 150 us and flags most messages (reference §4.5)."""
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(word))


class KeywordMatcher:
    def __init__(self, rules: Iterable[KeywordRule]) -> None:
        self.rules = tuple(rules)
        self.fuzzy = self._build([r for r in self.rules if r.mode == "fuzzy"], folded=True)
        self.strict = self._build([r for r in self.rules if r.mode == "strict"], folded=False)

    @staticmethod
    def _build(rules: list[KeywordRule], folded: bool) -> _Space:
        by_pattern: dict[str, list[KeywordRule]] = {}
        for rule in rules:
            patterns = [fold(rule.word) if folded else rule.word]
            if rule.pinyin and folded:
                patterns.append(fold(pinyin_of(rule.word)))
            for pattern in patterns:
                if pattern and SEPARATOR not in pattern and rule not in by_pattern.get(pattern, []):
                    by_pattern.setdefault(pattern, []).append(rule)
        if not by_pattern:
            return _Space(None)
        patterns = list(by_pattern)
        return _Space(daachorse.CharwiseDoubleArrayAhoCorasick(patterns), [by_pattern[p] for p in patterns])

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, subjects: Sequence[Subject]) -> list[list[Hit]]:
        """Hits per subject, in order, for a whole micro-batch at once."""
        hits: list[list[Hit]] = [[] for _ in subjects]
        if not subjects:
            return hits
        texts = [s.text for s in subjects]
        if self.fuzzy.automaton is not None:
            batch = fold_batch(texts)
            found = [(*batch.locate(start, end), pid) for start, end, pid in self.fuzzy.automaton.find_overlapping(batch.text)]
            self._collect(found, self.fuzzy, subjects, hits)
        if self.strict.automaton is not None:
            joined = SEPARATOR.join(texts)
            offsets, position = [], 0
            for text in texts:
                offsets.append(position)
                position += len(text) + 1
            found = []
            for start, end, pid in self.strict.automaton.find_overlapping(joined):
                k = bisect.bisect_right(offsets, start) - 1
                found.append((k, start - offsets[k], end - offsets[k], pid))
            self._collect(found, self.strict, subjects, hits)
        return hits

    @staticmethod
    def _collect(found: list[tuple[int, int, int, int]], space: _Space, subjects: Sequence[Subject],
                 hits: list[list[Hit]]) -> None:
        allowed: dict[int, list[tuple[int, int]]] = {}
        denied: list[tuple[int, int, int, KeywordRule]] = []
        for k, start, end, pid in found:
            subject = subjects[k]
            for rule in space.rules[pid]:
                if not rule.applies(subject.account, subject.conversation):
                    continue
                if rule.allow:
                    allowed.setdefault(k, []).append((start, end))
                else:
                    denied.append((k, start, end, rule))
        for k, start, end, rule in denied:
            if any(a <= start and end <= b for a, b in allowed.get(k, ())):
                continue
            text = subjects[k].text
            snippet = text[max(0, start - SNIPPET_CONTEXT): end + SNIPPET_CONTEXT]
            hits[k].append(Hit(rule.word, rule.category, rule.severity, rule.mode, subjects[k].field,
                               start, end, text[start:end], snippet))

