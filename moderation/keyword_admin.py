"""`wxarchive keywords`: managing the sensitive-word list on its compacted topic.

Writes go straight to PREFIX.keywords with the durable producer; workers pick them up within seconds and
swap in a new matcher without restarting. `list` reads the topic to its end and shows the latest state.
"""

from __future__ import annotations

from pathlib import Path

from moderation.keyword_set import KeywordSet, parse_rule_line, removal_record, rule_to_record
from schemas.keywords import KeywordRule
from wxarchive.config import Settings
from wxarchive.errors import WxarchiveError
from wxarchive.kafka_clients import publish, read_to_end
from wxarchive.topics import KEYWORDS, ensure_topics

__all__ = ["current_rules", "describe", "read_import_file", "write_rules"]


async def write_rules(settings: Settings, rules: list[KeywordRule], remove: bool = False) -> int:
    await ensure_topics(settings, KEYWORDS)
    return await publish(settings.kafka_bootstrap, KEYWORDS.name(settings),
                         (removal_record(rule) if remove else rule_to_record(rule) for rule in rules))


async def current_rules(settings: Settings) -> list[KeywordRule]:
    await ensure_topics(settings, KEYWORDS)
    keywords = KeywordSet()
    for record in await read_to_end(settings.kafka_bootstrap, KEYWORDS.name(settings)):
        try:
            keywords.apply(record.key, record.value)
        except ValueError:
            continue  # a record written by hand and broken: workers skip it too
    return sorted(keywords.rules.values(), key=lambda r: (r.allow, r.category, r.word))


def describe(rule: KeywordRule) -> str:
    """What a rule does, as `keywords add` reports it. An allow-list phrase has no category or severity: it
    silences the hits inside it, so it is said so rather than shown with a word's defaults."""
    how = rule.mode + ("+pinyin" if rule.pinyin else "")
    scope = [f"only in {', '.join(rule.groups)}"] if rule.groups else []
    scope += [f"only for {', '.join(rule.accounts)}"] if rule.accounts else []
    where = f", {' or '.join(scope)}" if scope else ""
    if rule.allow:
        return f"allow-list phrase {rule.word!r} ({how}{where}): hits inside it are not reported"
    return f"word {rule.word!r} ({how}, {rule.category}, severity {rule.severity}{where})"


def read_import_file(path: Path) -> list[KeywordRule]:
    """All rules of the file, or an error naming every bad line: an import is all or nothing."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WxarchiveError(f"cannot read {path}: {exc}") from None
    rules, problems = [], []
    for number, line in enumerate(lines, 1):
        try:
            rule = parse_rule_line(line)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if rule is not None:
            rules.append(rule)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise WxarchiveError(f"{path} has {len(problems)} bad line(s), nothing was imported: {shown}")
    return rules
