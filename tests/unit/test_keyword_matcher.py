"""Sensitive-word matching as a moderator relies on it: evasions caught, allow-listed phrases quiet, spans exact."""

from __future__ import annotations

import pytest

from eyun.traffic import DEMO_KEYWORDS, TrafficConfig, TrafficGenerator
from moderation.fold import fold, fold_batch
from moderation.matcher import KeywordMatcher, Subject
from schemas.callback import PayloadError
from schemas.keywords import KeywordRule
from schemas.message import parse_message

RULES = [KeywordRule("赌博", "gambling", 3), KeywordRule("代开发票", "fraud", 3), KeywordRule("QQ群", "spam", 1),
         KeywordRule("加微信123", "spam", 1), KeywordRule("10元一单", "fraud", 2)]

EVASIONS = [
    ("plain", "周末一起赌博吗", "赌博"),
    ("spaced", "周末一起赌 博吗", "赌 博"),
    ("newline and tab", "赌\n\t博", "赌\n\t博"),
    ("punctuated", "有人代-开-发-票吗", "代-开-发-票"),
    ("cjk punctuation", "代、开。发，票", "代、开。发，票"),
    ("zero width", "赌\u200b博\u200d", "赌\u200b博"),
    ("emoji between", "赌😀博", "赌😀博"),
    ("traditional", "有人代開發票嗎", "代開發票"),
    ("traditional and spaced", "賭 . 博", "賭 . 博"),
    ("full-width", "进ＱＱ群聊", "ＱＱ群"),
    ("case", "进qq群聊", "qq群"),
    ("circled digits", "加微信①②③", "加微信①②③"),
    ("full-width digits", "加微信１２３", "加微信１２３"),
    ("dingbat digits", "加微信❶➁➌", "加微信❶➁➌"),
    ("circled ten", "⑩元一单，日结", "⑩元一单"),
]


@pytest.mark.parametrize(("case", "text", "matched"), EVASIONS, ids=[e[0] for e in EVASIONS])
def test_every_evasion_class_is_caught_with_its_original_span(case: str, text: str, matched: str) -> None:
    (hits,) = KeywordMatcher(RULES).match([Subject(text)])
    assert len(hits) == 1, case
    hit = hits[0]
    assert text[hit.start:hit.end] == hit.matched == matched
    assert matched in hit.snippet


def test_allow_list_phrases_stay_quiet() -> None:
    matcher = KeywordMatcher([KeywordRule("赌", "gambling"), KeywordRule("赌气", allow=True), KeywordRule("发票", "fraud"),
                              KeywordRule("开发票抬头", allow=True)])
    quiet, loud, mixed = matcher.match([Subject("他在赌 气呢"), Subject("他在赌钱"), Subject("开发票抬头写全称，别赌了")])
    assert quiet == []
    assert [(h.word, h.matched) for h in loud] == [("赌", "赌")]
    assert [(h.word, h.start) for h in mixed] == [("赌", 10)]  # the allow phrase covers 发票, not the later 赌


def test_strict_words_match_only_as_written() -> None:
    matcher = KeywordMatcher([KeywordRule("发票", "fraud", mode="strict")])
    written, traditional, spaced = matcher.match([Subject("要发票吗"), Subject("要發票吗"), Subject("要发 票吗")])
    assert [h.matched for h in written] == ["发票"] and traditional == [] and spaced == []


def test_scoped_rules_apply_only_where_scoped() -> None:
    matcher = KeywordMatcher([KeywordRule("团购", "ads", groups=("g1@chatroom",)), KeywordRule("团购", "ads", accounts=("wxid_a",))])
    in_group, other_group, account = matcher.match([Subject("团购开始", "wxid_b", "g1@chatroom"),
                                                    Subject("团购开始", "wxid_b", "g2@chatroom"),
                                                    Subject("团购开始", "wxid_a", "wxid_peer")])
    assert len(in_group) == 1 and other_group == [] and len(account) == 1


def test_overlapping_words_are_all_reported() -> None:
    (hits,) = KeywordMatcher([KeywordRule("赌博"), KeywordRule("博彩"), KeywordRule("彩票")]).match([Subject("赌博彩票")])
    assert sorted((h.word, h.start, h.end) for h in hits) == [("博彩", 1, 3), ("彩票", 2, 4), ("赌博", 0, 2)]


def test_no_match_across_neighbouring_texts_and_spans_land_in_the_right_text() -> None:
    texts = ["今天去赌", "博物馆参观", "😀" * 5 + "赌博", "", "賭博"]
    hits = KeywordMatcher(RULES).match([Subject(t) for t in texts])
    assert [len(h) for h in hits] == [0, 0, 1, 0, 1]
    assert (hits[2][0].start, hits[2][0].end) == (5, 7) and hits[4][0].matched == "賭博"


def test_a_batch_with_an_expanding_character_is_located_exactly() -> None:
    texts = ["赌博", "⑩元一单", "x" * 3 + "赌博"]
    hits = KeywordMatcher(RULES).match([Subject(t) for t in texts])
    assert [[(h.start, h.end) for h in hs] for hs in hits] == [[(0, 2)], [(0, 4)], [(3, 5)]]


def test_fold_and_batch_fold_agree() -> None:
    texts = ["賭 博ＱＱ群①", "Hello, World! 你好。", "\u200b零宽", ""]
    batch = fold_batch(texts)
    assert batch.text.split("\x00") == [fold(t) for t in texts] == ["赌博qq群1", "helloworld你好", "零宽", ""]


def test_every_sensitive_message_the_simulator_plants_is_caught() -> None:
    generator = TrafficGenerator(TrafficConfig(count=20000, seed=11, sensitive_rate=0.1, duplicate_rate=0, malformed_rate=0))
    texts = []
    for body in generator.bodies():
        try:
            message = parse_message(body)
        except PayloadError:
            continue
        if message.type_name == "text":
            texts.append(message.text)
    matcher = KeywordMatcher(KeywordRule(w, c, s) for w, c, s in DEMO_KEYWORDS)
    hit_messages = sum(1 for hits in matcher.match([Subject(t) for t in texts]) if hits)
    assert hit_messages == generator.summary.sensitive_messages > 100


def test_pinyin_spellings_only_for_words_that_ask() -> None:
    matcher = KeywordMatcher([KeywordRule("赌博", "gambling", 3, pinyin=True), KeywordRule("发票", "fraud")])
    spelled, spaced, upper, other = matcher.match([Subject("一起dubo吗"), Subject("一起 du bo 吗"), Subject("DU-BO"),
                                                   Subject("要fapiao吗")])
    assert [h.matched for h in spelled] == ["dubo"] and [h.matched for h in spaced] == ["du bo"]
    assert [h.word for h in upper] == ["赌博"]
    assert other == []  # 发票 did not ask for pinyin
