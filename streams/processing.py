"""What the worker does to a micro-batch of raw callbacks, free of faust so it can be tested on its own.

For each record: parse and normalize it (a body that cannot be archived goes to the dead-letter topic
with the reason), drop it if its identity (wcId, newMsgId, or the stable hash) was seen within the dedupe
horizon, then check every text of the surviving messages against the sensitive-word list in one matcher
call. Outputs are records for the messages, events, moderation and dead-letter topics. The caller sends
them and waits for Kafka's acknowledgements before the batch's source offsets may be committed, so a crash
anywhere repeats work (duplicates the sinks remove) and never skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from schemas.callback import PayloadError
from schemas.message import ArchiveMessage, parse_message
from streams.keyword_matcher import Hit, KeywordMatcher, Subject

TEXT_FIELDS = ("text", "title", "description", "file_name", "quoted_text")


@dataclass(frozen=True)
class RawRecord:
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int


@dataclass
class Outputs:
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    moderation: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    duplicates: int = 0
    hits: int = 0


class Dedupe:
    """The seen-identities state: `first_seen(key)` gives the time a key was first archived or None."""

    def __init__(self, get: Callable[[str], int | None], put: Callable[[str, int], None], horizon_ms: int) -> None:
        self._get = get
        self._put = put
        self.horizon_ms = horizon_ms

    def is_duplicate(self, key: str, now_ms: int) -> bool:
        """Seen within the horizon: a duplicate. Older entries count as unseen (the sinks catch those)."""
        first = self._get(key)
        if first is not None and now_ms - first < self.horizon_ms:
            return True
        self._put(key, now_ms)
        return False


def process_batch(records: list[RawRecord], dedupe: Dedupe, matcher: KeywordMatcher, now_ms: int,
                  before_record: Callable[[int], None] = lambda index: None) -> Outputs:
    """`before_record(i)` runs before record i touches the dedupe state (faust needs its event current)."""
    out = Outputs()
    kept: list[tuple[ArchiveMessage, RawRecord]] = []
    for index, record in enumerate(records):
        try:
            message = parse_message(record.value)
        except PayloadError as exc:
            out.dead_letters.append((record.key, record.value, [*record.headers, ("wx-reason", exc.reason.encode()),
                                                                 ("wx-stage", b"worker")]))
            continue
        before_record(index)
        if dedupe.is_duplicate(message.dedupe_key, now_ms):
            out.duplicates += 1
            continue
        kept.append((message, record))

    subjects: list[Subject] = []
    owners: list[int] = []
    for position, (message, _) in enumerate(kept):
        for name in TEXT_FIELDS:
            text = getattr(message, name)
            if text:
                subjects.append(Subject(text, message.account, message.conversation, name))
                owners.append(position)
    hits_of: dict[int, list[Hit]] = {}
    for owner, hits in zip(owners, matcher.match(subjects)):
        if hits:
            hits_of.setdefault(owner, []).extend(hits)

    for position, (message, record) in enumerate(kept):
        key = message.kafka_key.encode()
        hits = hits_of.get(position, [])
        value = _archive_record(message, record, len(hits))
        (out.messages if message.kind == "message" else out.events).append((key, value))
        for hit in hits:
            out.moderation.append((key, _hit_record(message, hit)))
        out.hits += len(hits)
    return out


def _archive_record(message: ArchiveMessage, record: RawRecord, hits: int) -> bytes:
    doc = message.to_dict()
    headers = dict(record.headers)
    doc["received_ms"] = int(headers.get("wx-received-at", b"0") or 0)
    doc["source"] = {"partition": record.partition, "offset": record.offset}
    doc["moderation_hits"] = hits
    return orjson.dumps(doc)


def _hit_record(message: ArchiveMessage, hit: Hit) -> bytes:
    return orjson.dumps({
        "account": message.account, "conversation": message.conversation, "is_group": message.is_group,
        "sender": message.sender, "identity": message.identity, "new_msg_id": message.new_msg_id,
        "time_ms": message.time_ms, "word": hit.word, "category": hit.category, "severity": hit.severity,
        "mode": hit.mode, "field": hit.field, "start": hit.start, "end": hit.end, "matched": hit.matched,
        "snippet": hit.snippet,
    })
