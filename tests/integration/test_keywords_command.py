"""`wxarchive keywords` against the real broker: the list lives on its compacted topic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson

from moderation.keyword_set import KeywordSet
from moderation.matcher import Subject
from tests.support import read_topic
from wxarchive.config import Settings
from wxarchive.topics import KEYWORDS

ROOT = Path(__file__).parents[2]


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WXARCHIVE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "WXARCHIVE_TOPIC_PREFIX": settings.topic_prefix, "WXARCHIVE_DATA_DIR": str(settings.data_dir)}
    return subprocess.run([sys.executable, "-m", "commands", "keywords", *args], env=env, capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_add_remove_list_import(settings: Settings, tmp_path: Path, topic_name) -> None:  # type: ignore[no-untyped-def]
    s = Settings.load(env={"WXARCHIVE_DATA_DIR": str(tmp_path), "WXARCHIVE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                           "WXARCHIVE_TOPIC_PREFIX": topic_name("kw")})
    assert run(s, "add", "赌博", "--category", "gambling", "--severity", "3").stdout == \
        "added word '赌博' (fuzzy, gambling, severity 3)\n"
    assert run(s, "add", "发票", "--category", "fraud", "--strict").stdout == "added word '发票' (strict, fraud, severity 1)\n"
    # an allow-list phrase is reported as what it is, not with a word's category and severity
    assert run(s, "add", "赌气", "--allow").stdout == "added allow-list phrase '赌气' (fuzzy): hits inside it are not reported\n"
    assert run(s, "add", "团购", "--group", "g1@chatroom", "--group", "g2@chatroom").stdout == \
        "added word '团购' (fuzzy, default, severity 1, only in g1@chatroom, g2@chatroom)\n"
    assert run(s, "remove", "赌气", "--allow").stdout.strip() == "removed '赌气' (fuzzy, allow-list)"
    rules_file = tmp_path / "words.txt"
    rules_file.write_text("# imported\n刷单,fraud,2,pinyin\nallow:开发票抬头\n内幕消息,insider,3,fuzzy\n", encoding="utf-8")
    done = run(s, "import", str(rules_file))
    assert done.returncode == 0 and done.stdout.strip() == f"imported 3 rules from {rules_file}"

    listed = run(s, "list")
    assert listed.returncode == 0 and listed.stderr.strip() == "6 rules"
    assert "赌博\tgambling/3\tfuzzy\teverywhere" in listed.stdout
    assert "发票\tfraud/1\tstrict\teverywhere" in listed.stdout
    assert "团购\tdefault/1\tfuzzy\tg1@chatroom,g2@chatroom" in listed.stdout
    assert "刷单\tfraud/2\tfuzzy+pinyin\teverywhere" in listed.stdout
    assert "赌气" not in listed.stdout
    as_json = [orjson.loads(line) for line in run(s, "list", "--json").stdout.splitlines()]
    assert {r["word"] for r in as_json} == {"赌博", "发票", "团购", "刷单", "内幕消息", "开发票抬头"}

    # a worker replaying the topic arrives at the same list, and its matcher uses it
    records = asyncio.run(read_topic(s.kafka_bootstrap, KEYWORDS.name(s)))
    keywords = KeywordSet()
    for record in records:
        keywords.apply(record.key, record.value)
    assert asyncio.run(keywords.refresh()) and len(keywords.rules) == 6
    hits, by_pinyin = keywords.matcher.match([Subject("有人賭 博吗"), Subject("接 shua dan 的私聊")])
    assert [h.word for h in hits] == ["赌博"] and [h.word for h in by_pinyin] == ["刷单"]


def test_a_bad_import_imports_nothing(settings: Settings, tmp_path: Path, topic_name) -> None:  # type: ignore[no-untyped-def]
    s = Settings.load(env={"WXARCHIVE_DATA_DIR": str(tmp_path), "WXARCHIVE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                           "WXARCHIVE_TOPIC_PREFIX": topic_name("kw")})
    bad = tmp_path / "bad.txt"
    bad.write_text("赌博,gambling,3\n,empty\n刷单,fraud,high\n代开,fraud,2,loose\n", encoding="utf-8")
    done = run(s, "import", str(bad))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"wxarchive: error: {bad} has 3 bad line(s), nothing was imported: "
                                   "line 2: a keyword record needs a non-empty word; line 3: severity must be a whole "
                                   "number from 1 to 5, got 'high'; line 4: mode must be fuzzy or strict, got 'loose'")
    assert run(s, "list").stderr.strip() == "0 rules"
    missing = run(s, "import", str(tmp_path / "nope.txt"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
