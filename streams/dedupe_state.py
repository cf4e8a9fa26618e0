"""The worker's memory of archived identities: a local store per raw partition, backed by a changelog topic.

Why not a faust table: a faust table writes each key to its changelog the moment it is set, before the
batch's outputs are acknowledged, so a crash in between left identities in the changelog whose messages
never reached PREFIX.messages, and a restarted worker would drop their redelivery (loss). It also costs a
faust send per identity. Here a batch's new identities are remembered, in the local store and in one
changelog record per raw partition, only once its outputs are acknowledged (`remember` after `gather`).
A crash anywhere therefore repeats work and never skips it (issue 5, delivery).

The changelog (PREFIX.dedupe) has one partition per raw partition and is not compacted: it expires by
retention a little after the dedupe horizon, so a restore reads at most a horizon's worth. The local store
is a dict (memory://) or a RocksDB database per partition (rocksdb://, via rocksdict) that also keeps the
changelog offset it has applied, so a restart reads only what is newer. A partition this worker did not
hold a moment ago is caught up from the changelog before any of its records is checked. Entries older than
the horizon are swept from the local store a budget at a time. Duplicates older than the horizon are the
sinks' to remove (DESIGN invariant 2).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer

from wxarchive.kafka_clients import read_partitions

__all__ = ["DedupeState", "MemoryStore", "RocksStore"]

log = logging.getLogger("wxarchive.worker")
_APPLIED = b"\x00applied-offset"  # a key no identity can have (identities start with a wcId or a hex hash)
_U64 = struct.Struct(">Q")


class PartitionStore(Protocol):
    """Identities of one raw partition: identity -> first seen (epoch ms), and the changelog offset applied."""

    applied: int

    def get(self, key: bytes) -> int | None: ...
    def put_many(self, keys: Iterable[bytes], first_seen_ms: int) -> None: ...
    def mark_applied(self, offset: int) -> None: ...
    def expired(self, now_ms: int, horizon_ms: int, budget: int) -> list[bytes]: ...
    def delete_many(self, keys: list[bytes]) -> None: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[bytes, int] = {}
        self.applied = -1
        self._cursor: Iterator[tuple[bytes, int]] | None = None

    def get(self, key: bytes) -> int | None:
        return self.data.get(key)

    def put_many(self, keys: Iterable[bytes], first_seen_ms: int) -> None:
        self.data.update(dict.fromkeys(keys, first_seen_ms))

    def mark_applied(self, offset: int) -> None:
        self.applied = max(self.applied, offset)

    def expired(self, now_ms: int, horizon_ms: int, budget: int) -> list[bytes]:
        """Walk on from where the last sweep stopped, over a snapshot of the items taken when a pass begins."""
        found: list[bytes] = []
        try:
            if self._cursor is None:
                self._cursor = iter(list(self.data.items()))
            for _ in range(budget):
                key, first = next(self._cursor)
                if now_ms - first >= horizon_ms:
                    found.append(key)
        except StopIteration:
            self._cursor = None
        return found

    def delete_many(self, keys: list[bytes]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)

    def close(self) -> None:
        self.data.clear()


class RocksStore:
    """One RocksDB database per partition, raw bytes in and out: 8-byte big-endian first-seen times."""

    def __init__(self, path: Path, cache_mb: int = 16) -> None:
        from rocksdict import BlockBasedOptions, Cache, Options, Rdict

        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        table = BlockBasedOptions()
        # most lookups are for identities never seen: a bloom filter answers those without reading a block
        table.set_bloom_filter(10, False)
        table.set_block_cache(Cache(cache_mb * 1024 * 1024))
        options.set_block_based_table_factory(table)
        options.create_if_missing(True)
        self.db = Rdict(str(path), options)
        stored = self.db.get(_APPLIED)
        self.applied = _U64.unpack(stored)[0] - 1 if stored else -1
        self._resume_after: bytes | None = None

    def get(self, key: bytes) -> int | None:
        value = self.db.get(key)
        return _U64.unpack(value)[0] if value is not None else None

    def put_many(self, keys: Iterable[bytes], first_seen_ms: int) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        value = _U64.pack(first_seen_ms)
        for key in keys:
            batch.put(key, value)
        self.db.write(batch)

    def mark_applied(self, offset: int) -> None:
        if offset > self.applied:
            self.db.put(_APPLIED, _U64.pack(offset + 1))  # stored +1 so "nothing applied" (-1) fits unsigned
            self.applied = offset

    def expired(self, now_ms: int, horizon_ms: int, budget: int) -> list[bytes]:
        found: list[bytes] = []
        it = self.db.iter()
        if self._resume_after is None:
            it.seek_to_first()
        else:
            it.seek(self._resume_after)
            if it.valid() and it.key() == self._resume_after:
                it.next()
        seen = 0
        while it.valid() and seen < budget:
            key = it.key()
            if key != _APPLIED and now_ms - _U64.unpack(it.value())[0] >= horizon_ms:
                found.append(key)
            self._resume_after = key
            seen += 1
            it.next()
        if not it.valid():
            self._resume_after = None  # a full pass is done; the next sweep starts over
        del it
        return found

    def delete_many(self, keys: list[bytes]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(key)
        self.db.write(batch)

    def __len__(self) -> int:
        """RocksDB's own estimate (counting 10 million keys for a metrics scrape would take seconds)."""
        return max(0, int(self.db.property_int_value("rocksdb.estimate-num-keys") or 0) - 1)

    def close(self) -> None:
        self.db.close()


class DedupeState:
    """Seen identities for the raw partitions this worker holds. Use per batch: `catch_up`, `is_duplicate` for
    each record, then after the outputs are acknowledged `remember`, which writes the changelog."""

    def __init__(self, store_url: str, data_dir: Path, changelog: str, bootstrap: str, horizon_ms: int,
                 sweep_every_ms: int = 60_000, budget: int = 50_000) -> None:
        self.kind = store_url.split("://")[0]
        self.data_dir = data_dir
        self.changelog = changelog
        self.bootstrap = bootstrap
        self.horizon_ms = horizon_ms
        self.sweep_every_ms = sweep_every_ms
        self.budget = budget
        self.stores: dict[int, PartitionStore] = {}
        self.current: set[int] = set()  # partitions caught up with the changelog since they were assigned
        self.pending: dict[int, dict[bytes, None]] = {}
        self._in_flight: list[tuple[int, asyncio.Future[Any]]] = []
        self.expired = 0
        self.restored = 0
        self._last_sweep = 0

    def _store(self, partition: int) -> PartitionStore:
        store = self.stores.get(partition)
        if store is None:
            store = RocksStore(self.data_dir / f"p{partition}") if self.kind == "rocksdb" else MemoryStore()
            self.stores[partition] = store
        return store

    async def catch_up(self, partitions: Iterable[int], timeout: float = 120.0) -> None:
        """Apply what the changelog holds beyond each store's applied offset, for partitions not current."""
        stale = {p: self._store(p).applied + 1 for p in set(partitions) - self.current}
        if not stale:
            return
        records = await read_partitions(self.bootstrap, self.changelog, stale, timeout=timeout)
        for record in records:
            doc = orjson.loads(record.value)
            keys = [k.encode() for k in doc["ids"]]
            store = self._store(record.partition)
            store.put_many(keys, int(doc["first_seen_ms"]))
            store.mark_applied(record.offset)
            self.restored += len(keys)
        self.current.update(stale)
        log.info("dedupe state caught up", extra={"partitions": sorted(stale), "identities": len(records)})

    def revoke(self, partitions: Iterable[int]) -> None:
        """Another worker may write these partitions' changelog now: catch up again before using them."""
        self.current.difference_update(partitions)

    def is_duplicate(self, partition: int, key: str, now_ms: int) -> bool:
        """Seen within the horizon (earlier in this batch included): a duplicate. Else noted as pending."""
        raw = key.encode()
        pending = self.pending.setdefault(partition, {})
        if raw in pending:
            return True
        first = self._store(partition).get(raw)
        if first is not None and now_ms - first < self.horizon_ms:
            return True
        pending[raw] = None
        return False

    async def remember(self, producer: AIOKafkaProducer, now_ms: int) -> None:
        """Call once the batch's outputs are acknowledged: the local stores, and the changelog.

        The changelog record is not waited for (it rides with the next batch's sends): while it is in flight a
        restart would lack these identities and repeat their messages, duplicates at worst, never a loss."""
        self.confirm()
        batch, self.pending = self.pending, {}
        for partition, keys in batch.items():
            if keys:
                self._store(partition).put_many(keys, now_ms)
                value = orjson.dumps({"first_seen_ms": now_ms, "ids": [k.decode() for k in keys]})
                self._in_flight.append((partition, await producer.send(self.changelog, value, partition=partition)))

    def confirm(self) -> None:
        """Note the changelog offsets Kafka has acknowledged, so a restart of a rocksdb store reads on from there."""
        waiting = []
        for partition, future in self._in_flight:
            if not future.done():
                waiting.append((partition, future))
            elif future.exception() is not None:
                log.warning("a dedupe changelog record was not written; a restart may repeat some messages",
                            extra={"partition": partition, "error": str(future.exception())})
            elif partition in self.stores:
                self.stores[partition].mark_applied(future.result().offset)
        self._in_flight = waiting

    async def flush(self) -> None:
        """Wait for the changelog records in flight (on a clean stop)."""
        await asyncio.gather(*(future for _, future in self._in_flight), return_exceptions=True)
        self.confirm()

    def forget_pending(self) -> None:
        """A batch that failed before its outputs were acknowledged remembers nothing."""
        self.pending = {}

    def maybe_sweep(self, now_ms: int) -> int:
        """Delete up to `budget` keys' worth of expired entries per partition, at most once per `sweep_every_ms`."""
        if now_ms - self._last_sweep < self.sweep_every_ms:
            return 0
        self._last_sweep = now_ms
        swept = 0
        for store in self.stores.values():
            keys = store.expired(now_ms, self.horizon_ms, self.budget)
            store.delete_many(keys)
            swept += len(keys)
        self.expired += swept
        return swept

    def __len__(self) -> int:
        return sum(len(s) for s in self.stores.values())

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        self.current.clear()
