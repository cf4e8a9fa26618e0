"""`wxarchive up --demo`: simulated traffic through the running stack, then a report read from ClickHouse.

The simulator knows the truth (unique messages and events, duplicates, malformed bodies, sensitive messages
by category); the report puts what the archive's views hold next to it, and the demo passes only when they
agree. It reads through the stack's own sink client, since in embedded mode that process owns chdb.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from eyun.delivery import Progress, post_all
from eyun.traffic import DEMO_KEYWORDS, Summary, TrafficConfig, TrafficGenerator
from moderation.keyword_admin import write_rules
from schemas.keywords import KeywordRule
from sinks.sink import Sink
from wxarchive.config import Settings
from wxarchive.kafka_clients import read_to_end
from wxarchive.topics import KEYWORDS, ensure_topics

CATCH_UP_TIMEOUT_S = 180.0
STALL_S = 15.0  # nothing new in the archive for this long: it has caught up with all it will get


async def seed_keywords(settings: Settings) -> int:
    """The demo's sensitive words, written only to an empty list (a user's own list is left alone)."""
    await ensure_topics(settings, KEYWORDS)
    if await read_to_end(settings.kafka_bootstrap, KEYWORDS.name(settings)):
        return 0
    await write_rules(settings, [KeywordRule(w, c, s) for w, c, s in DEMO_KEYWORDS])
    return len(DEMO_KEYWORDS)


@dataclass(frozen=True)
class ArchiveCounts:
    messages: int
    events: int
    raw: int
    dead_letters: int
    worker_dead_letters: int

    def __sub__(self, earlier: ArchiveCounts) -> ArchiveCounts:
        return ArchiveCounts(*(getattr(self, f) - getattr(earlier, f) for f in
                               ("messages", "events", "raw", "dead_letters", "worker_dead_letters")))

    @property
    def duplicates(self) -> int:
        """Raw callbacks that became neither a message nor an event nor a dead letter: dropped as duplicates."""
        return self.raw - self.messages - self.events - self.worker_dead_letters


async def archive_counts(sink: Sink) -> ArchiveCounts:
    (row,) = await sink.clickhouse.query_rows(
        "SELECT (SELECT count() FROM wxarchive.v_messages), (SELECT count() FROM wxarchive.v_account_events), "
        "(SELECT count() FROM wxarchive.raw_callbacks FINAL), (SELECT count() FROM wxarchive.dead_letters FINAL), "
        "(SELECT count() FROM wxarchive.dead_letters FINAL WHERE stage = 'worker')")
    return ArchiveCounts(*(int(v) for v in row))


def matches(counts: ArchiveCounts, truth: Summary) -> bool:
    return (counts.messages == truth.expected_unique_messages and counts.events == truth.expected_unique_events
            and counts.dead_letters == truth.malformed and counts.duplicates == truth.duplicates)


async def run_demo(sink: Sink, edge_url: str, count: int, seed: int, accounts: int) -> bool:
    generator = TrafficGenerator(TrafficConfig(count=count, seed=seed, accounts=accounts))
    bodies = generator.bodies()
    truth = generator.summary
    before = await archive_counts(sink)  # an archive used before: the report counts what this run adds
    print(f"demo: posting {len(bodies):,} simulated callbacks (seed {seed}) to the edge…", flush=True)
    started = time.monotonic()
    answers = await post_all(bodies, edge_url, concurrency=16, progress=Progress(len(bodies)))
    posted_s = time.monotonic() - started
    print(f"demo: posted in {posted_s:.1f}s, answers " + ", ".join(f"{k}: {v:,}" for k, v in sorted(answers.items())),
          flush=True)
    print("demo: waiting for the archive to catch up…", flush=True)
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    counts = await archive_counts(sink) - before
    changed = time.monotonic()
    while not matches(counts, truth) and time.monotonic() < deadline and time.monotonic() - changed < STALL_S:
        await asyncio.sleep(0.5)
        latest = await archive_counts(sink) - before
        if latest != counts:
            counts, changed = latest, time.monotonic()
    caught_up_s = time.monotonic() - started
    ok = matches(counts, truth)
    print(await report(sink, counts, truth, caught_up_s, ok), flush=True)
    return ok


async def report(sink: Sink, counts: ArchiveCounts, truth: Summary, seconds: float, ok: bool) -> str:
    def line(label: str, got: int, want: int) -> str:
        return f"  {label:<22} {got:>8,}   simulator {want:>8,}   {'ok' if got == want else 'MISMATCH'}"

    lines = [f"archive report (read from ClickHouse, {seconds:.1f}s after the first post):",
             line("messages archived", counts.messages, truth.expected_unique_messages),
             line("events archived", counts.events, truth.expected_unique_events),
             line("duplicates dropped", counts.duplicates, truth.duplicates),
             line("malformed rejected", counts.dead_letters, truth.malformed)]
    hits = await sink.clickhouse.query_rows(
        "SELECT category, uniqExact(account, identity) AS messages, count() AS hits FROM wxarchive.v_moderation_hits "
        "WHERE has({accounts:Array(String)}, account) GROUP BY category ORDER BY messages DESC",
        {"accounts": list(truth.accounts)})
    lines.append("  moderation hits        " + (", ".join(f"{c} {m} messages ({h} hits)" for c, m, h in hits) or "none")
                 + f"   (simulator: {truth.sensitive_messages} sensitive messages)")
    sample = await sink.clickhouse.query_rows(
        "SELECT account, conversation, conversation_name, message_count FROM wxarchive.v_last_messages "
        "WHERE is_group AND has({accounts:Array(String)}, account) ORDER BY message_count DESC, conversation LIMIT 1",
        {"accounts": list(truth.accounts)})
    if sample:
        account, conversation, name, n = sample[0]
        lines.append(f"  sample conversation    {name or conversation} ({conversation}, {n} messages), the last 5:")
        recent = await sink.clickhouse.query_rows(
            "SELECT formatDateTime(time, '%Y-%m-%d %H:%i'), if(sender_name = '', sender, sender_name), type_name, "
            "if(recalled, '[recalled] ', '') || substring(replaceAll(content, '\\n', ' '), 1, 60) "
            "FROM wxarchive.v_messages WHERE account = {a:String} AND conversation = {c:String} "
            "ORDER BY time DESC, identity DESC LIMIT 5", {"a": account, "c": conversation})
        for when, sender, kind, text in reversed(recent):
            lines.append(f"    {when}  {sender}: {text if text.strip() else '[' + kind + ']'}")
    if not ok and counts.raw > 0 and counts.messages == 0:
        lines.append("  every callback was a duplicate of an earlier run: the same --seed on the same data directory")
    lines.append("demo passed: the archive matches the simulator" if ok
                 else "demo FAILED: the archive does not match the simulator (see MISMATCH above)")
    return "\n".join(lines)
