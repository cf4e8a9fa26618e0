"""What the worker does to a micro-batch of raw callbacks, free of faust so it can be tested on its own.

Two phases, so the worker can look names up in between: `prepare_batch` parses and normalizes each
record (a body that cannot be archived goes to the dead-letter topic with the reason) and drops it if its
identity (wcId, newMsgId, or the stable hash) was seen within the dedupe horizon (streams.dedupe_state);
`finish_batch` checks every text of the surviving messages against the sensitive-word list in one matcher
call. Outputs are records for the messages, events, moderation and dead-letter topics. The caller sends
them and waits for Kafka's acknowledgements before it records the batch's identities and before the
batch's source offsets may be committed, so a crash anywhere repeats work (duplicates the sinks remove)
and never skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import orjson

from moderation.matcher import Hit, KeywordMatcher, Subject
from schemas.callback import PayloadError
from schemas.message import ArchiveMessage, parse_message
from streams.enrichment import Names

__all__ = ["RawRecord", "finish_batch", "prepare_batch"]

TEXT_FIELDS = ("text", "title", "description", "file_name", "quoted_text")


@dataclass(frozen=True)
class RawRecord:
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int

    @cached_property
    def received_ms(self) -> int:
        """When the edge received it (its `wx-received-at` header), 0 if unknown; read once, used twice."""
        return int(dict(self.headers).get("wx-received-at", b"0") or 0)


@dataclass
class Prepared:
    """A batch after parsing and dedupe: the messages to archive, and what was set aside."""

    kept: list[tuple[ArchiveMessage, RawRecord]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    duplicates: int = 0


@dataclass
class Outputs:
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    moderation: list[tuple[bytes, bytes]] = field(default_factory=list)
    hits: int = 0


def prepare_batch(records: list[RawRecord], is_duplicate: Callable[[int, str], bool]) -> Prepared:
    """`is_duplicate(partition, identity)` answers from the dedupe state of the record's raw partition."""
    prepared = Prepared()
    for record in records:
        try:
            message = parse_message(record.value)
        except PayloadError as exc:
            prepared.dead_letters.append((record.key, record.value, [
                *record.headers, ("wx-reason", exc.reason.encode()), ("wx-stage", b"worker")]))
            continue
        if is_duplicate(record.partition, message.dedupe_key):
            prepared.duplicates += 1
            continue
        prepared.kept.append((message, record))
    return prepared


def finish_batch(prepared: Prepared, names: list[Names], matcher: KeywordMatcher) -> Outputs:
    """Moderate every text of the kept messages in one matcher call; build the output records."""
    out = Outputs()
    kept = prepared.kept

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
        value = _archive_record(message, record, names[position], len(hits))
        (out.messages if message.kind == "message" else out.events).append((key, value))
        for hit in hits:
            out.moderation.append((key, _hit_record(message, hit)))
        out.hits += len(hits)
    return out


def _archive_record(message: ArchiveMessage, record: RawRecord, names: Names, hits: int) -> bytes:
    doc = message.to_dict()
    doc.update(sender_name=names.sender_name, sender_remark=names.sender_remark, sender_alias=names.sender_alias,
               conversation_name=names.conversation_name, enriched=names.enriched)
    doc["received_ms"] = record.received_ms
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
