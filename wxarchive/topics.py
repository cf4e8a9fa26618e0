"""The archive's Kafka topics, declared once: names, retention and compaction.

The raw topic is the source of truth (DESIGN invariant 3), so it never expires. Topics holding the latest
state per key (keywords, contacts) are compacted. Brokers must not auto-create topics: a typo should fail.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from wxarchive.config import Settings
from wxarchive.errors import BrokerError


@dataclass(frozen=True)
class Topic:
    suffix: str
    config: dict[str, str] = field(default_factory=dict)

    def name(self, settings: Settings) -> str:
        return f"{settings.topic_prefix}.{self.suffix}"


_MONTH_MS = str(30 * 24 * 3600 * 1000)
RAW = Topic("raw", {"retention.ms": "-1", "max.message.bytes": "2097152"})
DLQ = Topic("dlq", {"retention.ms": str(90 * 24 * 3600 * 1000), "max.message.bytes": "2097152"})
MESSAGES = Topic("messages", {"retention.ms": _MONTH_MS})
EVENTS = Topic("events", {"retention.ms": _MONTH_MS})
CONTACTS = Topic("contacts", {"cleanup.policy": "compact"})
MODERATION = Topic("moderation", {"retention.ms": _MONTH_MS})
KEYWORDS = Topic("keywords", {"cleanup.policy": "compact"})


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
                        topic_configs=t.config) for t in wanted]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another process created it between our look and our request
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
    """Make an existing topic's declared settings what the current settings derive (the dedupe horizon may have
    changed since it was created); returns whether anything changed."""
    current = await topic_config(settings, topic)
    if all(current.get(k) == v for k, v in topic.config.items()):
        return False
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic.name(settings), topic.config)])
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
