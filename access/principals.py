"""Who holds which token: the compacted PREFIX.principals topic, folded into memory.

Every API process follows the topic from its beginning with a consumer of its own (no group: each process needs
every record, and there is nothing to commit), so a token created or revoked anywhere is known everywhere
within a second or two, with no shared database in the request path. The topic is small (one record per token
ever made, after compaction), so reading it whole at start costs nothing.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from access.tokens import MAX_TOKEN_CHARS, hash_token, token_id, token_matches
from schemas.access import Principal
from wxarchive.config import Settings
from wxarchive.errors import BrokerError
from wxarchive.kafka_clients import publish, read_to_end, topic_partitions
from wxarchive.topics import PRINCIPALS, ensure_topics

__all__ = ["PrincipalStore", "Principals", "current_principals", "publish_principal"]

log = logging.getLogger("wxarchive.access")


class Principals:
    """The latest state per token_id, folded from the topic's records in any order: the higher version wins, as
    in the `principals` table (ReplacingMergeTree(version)), so the API and the table agree on every token."""

    def __init__(self) -> None:
        self.by_id: dict[str, Principal] = {}
        self._by_hash: dict[str, Principal] = {}

    def apply(self, value: bytes | None) -> None:
        """Fold one record value in; ValueError for one that is no principal."""
        if value is None:
            return  # a tombstone would forget a token, revoked or not: a revoke event is the way to end one
        new = Principal.from_json(value)
        if token_id(new.token_sha256) != new.token_id:
            raise ValueError(f"token_id {new.token_id!r} is not the start of its token_sha256")
        current = self.by_id.get(new.token_id)
        if current is not None and current.version > new.version:
            return
        self.by_id[new.token_id] = new
        self._by_hash[new.token_sha256] = new

    def active(self, token: str) -> Principal | None:
        """The principal of a token that is known and not revoked, else None. The table is keyed by the token's
        hash, so finding it compares hashes, which tell nothing about the token; the match is then confirmed in
        constant time all the same."""
        if len(token) > MAX_TOKEN_CHARS:
            return None
        found = self._by_hash.get(hash_token(token))
        if found is None or found.revoked or not token_matches(token, found.token_sha256):
            return None
        return found

    def listing(self) -> list[Principal]:
        """Every token ever made, revoked ones too, oldest first."""
        return sorted(self.by_id.values(), key=lambda p: (p.created_at, p.token_id))


async def publish_principal(settings: Settings, principal: Principal) -> None:
    """Write a principal's new state, keyed by its token_id, and return once Kafka acknowledged it (acks=all)."""
    await ensure_topics(settings, PRINCIPALS)
    await publish(settings.kafka_bootstrap, PRINCIPALS.name(settings),
                  [(principal.token_id.encode(), principal.to_json())])


async def current_principals(settings: Settings) -> Principals:
    """The principals as the topic holds them now, read to its end once (for the CLI)."""
    await ensure_topics(settings, PRINCIPALS)
    principals = Principals()
    for record in await read_to_end(settings.kafka_bootstrap, PRINCIPALS.name(settings)):
        _apply(principals, record.value, f"{record.partition}:{record.offset}")
    return principals


def _apply(principals: Principals, value: bytes | None, where: str) -> None:
    try:
        principals.apply(value)
    except ValueError as exc:
        log.warning("principal record skipped", extra={"record": where, "reason": str(exc)})


class PrincipalStore:
    """The principals topic followed live: `lookup(token)` answers from memory.

    Until the store has read to the end offsets the topic had at start, `ready` is False and `lookup` refuses
    every token: a token revoked in the part not read yet would otherwise still be let in. While Kafka is away
    the store keeps what it knows and reconnects on its own (every `retry_s`)."""

    def __init__(self, settings: Settings, *, retry_s: float = 1.0, poll_ms: int = 250) -> None:
        self.settings = settings
        self.principals = Principals()
        self.retry_s = retry_s
        self.poll_ms = poll_ms
        self.reason = "starting"  # why not ready, for /readyz
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def lookup(self, token: str) -> Principal | None:
        """The principal a bearer token belongs to; None for an unknown or revoked token, or before `ready`."""
        return self.principals.active(token) if self.ready else None

    async def start(self) -> None:
        """Begin following the topic in the background; returns at once (see wait_ready)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="principals")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the store has caught up, or raise BrokerError saying why it has not."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise BrokerError(f"the principals topic was not read to its end within {timeout:g}s: {self.reason}"
                              ) from None

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _follow(self) -> None:
        while True:
            try:
                await self._follow_once()
            except (KafkaError, OSError, BrokerError) as exc:
                self.reason = f"Kafka at {self.settings.kafka_bootstrap}: {type(exc).__name__}: {exc}"
                log.warning("following the principals topic failed; retrying", extra={"error": self.reason})
                await asyncio.sleep(self.retry_s)

    async def _follow_once(self) -> None:
        await ensure_topics(self.settings, PRINCIPALS)
        topic = PRINCIPALS.name(self.settings)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    fetch_max_wait_ms=self.poll_ms)
        await consumer.start()
        try:
            partitions = await topic_partitions(consumer, topic)
            if not partitions:
                raise BrokerError(f"{topic} has no partitions")
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while True:
                batches = await consumer.getmany(*partitions, timeout_ms=self.poll_ms)
                for records in batches.values():
                    for record in records:
                        _apply(self.principals, record.value, f"{record.partition}:{record.offset}")
                if not self.ready and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                    self.reason = ""
                    self._ready.set()
        finally:
            await consumer.stop()
