"""Folding text so that evasive spellings of a sensitive word look like the word itself.

One table maps every code point: NFKC (full-width and half-width forms, circled and full-width digits),
lower case, dingbat digits NFKC leaves alone (❶ ➀ → 1), traditional to simplified per character
(OpenCC t2s), and deletion of punctuation, spaces, symbols, emoji, zero-width and control characters, so
"賭 博", "赌\u200b博" and "ＱＱ群" fold to "赌博" and "qq群". Keywords are folded by the same table.

Per-character folding in CPython is the real cost of moderation (../shared/reference/keyword-filtering.md
§4.1: 9–30 MB/s per message), so batches are folded at once with numpy: the texts are joined with a
separator no keyword contains, looked up in the table as an array, and the deleted positions dropped,
keeping for each surviving character its index in the original. 746 code points fold to several
characters (⑩ → "10", ½); texts containing one take an exact per-text path instead.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np

__all__ = ["fold", "fold_batch", "fold_table"]

DELETE = np.uint32(0xFFFFFFFF)
SEPARATOR = "\x00"  # kept by the fold (unlike other control characters), never inside a keyword
_CJK_RANGES = ((0x3400, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))


@dataclass(frozen=True)
class FoldTable:
    table: np.ndarray                 # uint32 per code point: the folded code point, or DELETE
    expands: np.ndarray               # bool per code point: folds to more than one character
    expansions: dict[int, str]        # those code points' folded text ("" when all of it is deleted)


@functools.lru_cache(maxsize=1)
def fold_table() -> FoldTable:
    """Built once per process (about 0.3 s)."""
    import opencc_pyo3

    t2s = opencc_pyo3.OpenCC("t2s")
    table = np.arange(0x110000, dtype=np.uint32)
    expansions: dict[int, str] = {}
    for code in range(0x110000):
        ch = chr(code)
        category = unicodedata.category(ch)
        if category in ("Cn", "Co", "Cs"):
            continue
        if category[0] in "PZS" or category in ("Cf", "Cc"):
            table[code] = DELETE
            continue
        folded = unicodedata.normalize("NFKC", ch).lower()
        if folded == ch and ch not in "0123456789":
            digit = unicodedata.digit(ch, None)
            if digit is not None:
                folded = str(digit)
        if len(folded) == 1 and any(lo <= code <= hi for lo, hi in _CJK_RANGES):
            simplified = t2s.convert(folded)
            if len(simplified) == 1:
                folded = simplified
        if len(folded) == 1:
            table[code] = ord(folded)
        else:
            expansions[code] = "".join(c for c in folded if unicodedata.category(c)[0] not in "PZS")
    table[0] = 0  # the batch separator survives
    expands = np.zeros(0x110000, dtype=bool)
    expands[list(expansions)] = True
    return FoldTable(table, expands, expansions)


def fold(text: str) -> str:
    """The folded form of one text (keywords, allow-list phrases, tests)."""
    return fold_with_offsets(text)[0]


def fold_with_offsets(text: str) -> tuple[str, list[int]]:
    """Exact per-text fold: the folded text and, for each of its characters, the index it came from."""
    ft = fold_table()
    out: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        code = ord(ch)
        if ft.expands[code]:
            piece = ft.expansions[code]
            out.append(piece)
            origin.extend([index] * len(piece))
            continue
        mapped = ft.table[code]
        if mapped != DELETE:
            out.append(chr(mapped))
            origin.append(index)
    return "".join(out), origin


@dataclass
class FoldedBatch:
    """Texts folded together: `text` is their folded forms joined by SEPARATOR; `origin[i]` is the index in
    `joined` (the originals joined by SEPARATOR) of folded character i; `starts[k]` is where original k begins."""

    text: str
    origin: np.ndarray
    starts: np.ndarray

    def locate(self, start: int, end: int) -> tuple[int, int, int]:
        """(text number, start, end) in the original text for the folded span [start, end)."""
        first, last = int(self.origin[start]), int(self.origin[end - 1])
        k = int(np.searchsorted(self.starts, first, side="right")) - 1
        base = int(self.starts[k])
        return k, first - base, last - base + 1


def fold_batch(texts: list[str]) -> FoldedBatch:
    ft = fold_table()
    joined = SEPARATOR.join(texts)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1])) if texts else np.zeros(0, dtype=np.int64)
    if ft.expands[codes].any():
        return _fold_batch_exactly(texts, starts)
    folded = ft.table[codes]
    origin = np.flatnonzero(folded != DELETE)
    text = folded[origin].tobytes().decode("utf-32-le", "surrogatepass")
    return FoldedBatch(text, origin, starts)


def _fold_batch_exactly(texts: list[str], starts: np.ndarray) -> FoldedBatch:
    parts: list[str] = []
    origin: list[int] = []
    for k, text in enumerate(texts):
        folded, offsets = fold_with_offsets(text)
        base = int(starts[k])
        if k:
            parts.append(SEPARATOR)
            origin.append(base - 1)
        parts.append(folded)
        origin.extend(base + o for o in offsets)
    return FoldedBatch("".join(parts), np.asarray(origin, dtype=np.int64), starts)
