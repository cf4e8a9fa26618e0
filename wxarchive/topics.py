"""The archive's Kafka topics, declared once: names, retention, compaction and record sizes.

The raw topic is the source of truth (DESIGN invariant 3), so it never expires, and neither does the audit
trail. Topics holding the latest state per key (keywords, contacts, principals) are compacted. Brokers must not
auto-create topics: a typo should fail.

One size story (invariant 1: nothing accepted is lost): every record size limit derives from the edge's
body limit. A raw or dead-letter record is at most the body plus `RECORD_HEADROOM_BYTES` (key, headers,
batch framing), and the topics, the producers' request size and the edge's dead letters all use that
figure, so a body the edge accepts is a record Kafka takes. The worker's record of a message holds the raw
body as a JSON string and its decoded text beside it: up to three times the body (a body of escapes, each
escaped again), so the topics the worker writes take four times the raw limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from wxarchive.config import Settings
from wxarchive.errors import BrokerError

__all__ = ["AUDIT", "CONTACTS", "DLQ", "EVENTS", "HEADER_VALUE_MAX_BYTES", "KEYWORDS", "MESSAGES", "MODERATION",
           "PRINCIPALS", "RAW", "Topic", "align_topic_config", "dedupe_changelog", "ensure_topics",
           "max_derived_record_bytes", "max_record_bytes", "record_bytes", "topic_config"]

RECORD_HEADROOM_BYTES = 64 * 1024  # key, headers (each bounded by the edge) and batch framing beside a body
DERIVED_RECORD_FACTOR = 4  # a worker record is at most 3 bodies and its fields (tests/unit/test_record_sizes.py)
HEADER_VALUE_MAX_BYTES = 256  # a header value taken from a request is cut to this many bytes


def max_record_bytes(settings: Settings) -> int:
    """The largest raw or dead-letter record: the edge's body limit plus the headroom."""
    return settings.edge_max_body_bytes + RECORD_HEADROOM_BYTES


def max_derived_record_bytes(settings: Settings) -> int:
    """The largest record the worker writes for one raw record (see the module's docstring)."""
    return DERIVED_RECORD_FACTOR * max_record_bytes(settings)


def record_bytes(key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]
                 ) -> int:
    """An upper bound of a record's size in a batch of its own (Kafka's record batch v2 framing)."""
    return 61 + 21 + len(key or b"") + len(value) + sum(5 + len(k.encode()) + len(v) for k, v in headers)


@dataclass(frozen=True)
class Topic:
    suffix: str
    config: dict[str, str] = field(default_factory=dict)
    sized: str = ""  # "raw": records up to max_record_bytes; "derived": up to max_derived_record_bytes

    def name(self, settings: Settings) -> str:
        return f"{settings.topic_prefix}.{self.suffix}"

    def configs(self, settings: Settings) -> dict[str, str]:
        """The topic's configuration under these settings: the declared one plus its record size limit."""
        if self.sized == "raw":
            return {**self.config, "max.message.bytes": str(max_record_bytes(settings))}
        if self.sized == "derived":
            return {**self.config, "max.message.bytes": str(max_derived_record_bytes(settings))}
        return dict(self.config)


_MONTH_MS = str(30 * 24 * 3600 * 1000)
RAW = Topic("raw", {"retention.ms": "-1"}, sized="raw")
DLQ = Topic("dlq", {"retention.ms": str(90 * 24 * 3600 * 1000)}, sized="derived")  # the worker dead-letters too
MESSAGES = Topic("messages", {"retention.ms": _MONTH_MS}, sized="derived")
EVENTS = Topic("events", {"retention.ms": _MONTH_MS}, sized="derived")
CONTACTS = Topic("contacts", {"cleanup.policy": "compact"})
MODERATION = Topic("moderation", {"retention.ms": _MONTH_MS})
KEYWORDS = Topic("keywords", {"cleanup.policy": "compact"})
# the read side's events (schemas/access.py): who looked at what is evidence, kept as long as the raw callbacks;
# a token's latest state is all that matters, so principals are compacted, keyed by token_id
AUDIT = Topic("audit", {"retention.ms": "-1"})
PRINCIPALS = Topic("principals", {"cleanup.policy": "compact"})


def dedupe_changelog(settings: Settings) -> Topic:
    """The worker's dedupe changelog: batches of identities, kept a day longer than the dedupe horizon and
    deleted by retention (not compaction), in segments of at most a day so expiry is not held back a week."""
    horizon_ms = settings.worker_dedupe_days * 24 * 3600 * 1000
    day_ms = 24 * 3600 * 1000
    return Topic("dedupe", {"cleanup.policy": "delete", "retention.ms": str(horizon_ms + day_ms),
                            "segment.ms": str(min(day_ms, horizon_ms))})


async def ensure_topics(settings: Settings, *topics: Topic) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t.name(settings) not in existing]
        if not wanted:
            return []
        new = [NewTopic(t.name(settings), settings.kafka_partitions, settings.kafka_replication_factor,
                        topic_configs=t.configs(settings)) for t in wanted]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process created it between our look and ours
            await admin.create_topics(new)
        names = [t.name(settings) for t in wanted]
        await _wait_for_leaders(admin, names)
        return names
    finally:
        await admin.close()


async def topic_config(settings: Settings, topic: Topic) -> dict[str, str]:
    """The topic's configuration as the broker reports it (defaults included)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic.name(settings))])
    finally:
        await admin.close()
    return {entry[0]: entry[1] for entry in response.resources[0][4]}


async def align_topic_config(settings: Settings, topic: Topic) -> bool:
    """Make an existing topic's declared settings what the current settings derive (the dedupe horizon or the
    body limit may have changed since it was created); returns whether anything changed."""
    wanted = topic.configs(settings)
    current = await topic_config(settings, topic)
    if all(current.get(k) == v for k, v in wanted.items()):
        return False
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic.name(settings), wanted)])
    finally:
        await admin.close()
    return True


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0) -> None:
    """A topic just created has no partition leaders for a moment; clients that use it then get errors."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        described = await admin.describe_topics(names)
        if all(t.get("error_code", 0) == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
               for t in described):
            return
        await asyncio.sleep(0.1)
    raise BrokerError(f"topics {', '.join(names)} got no partition leaders within {timeout:g}s")
