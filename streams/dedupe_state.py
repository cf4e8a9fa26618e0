"""The worker's memory of archived identities, bounded by the dedupe horizon.

A faust table maps each identity (`wcId|newMsgId` or the stable hash) to [first seen ms, partition]. faust's
own expiry is for windowed tables, and with RocksDB it does not work (faust-streaming issue 385), so the
table is plain and swept here: a cursor walks the local store a budget of keys at a time between batches,
and an entry older than the horizon is deleted from the store and tombstoned on the changelog partition it
was written to, so a restore after a restart is bounded too. Duplicates older than the horizon are the
sinks' to remove (DESIGN invariant 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from streams.processing import Dedupe


class DedupeState:
    def __init__(self, table: Any, horizon_ms: int, sweep_every_ms: int = 60_000, budget: int = 50_000) -> None:
        self.table = table
        self.horizon_ms = horizon_ms
        self.sweep_every_ms = sweep_every_ms
        self.budget = budget
        self.expired = 0
        self._last_sweep = 0
        self._cursor: Iterator[tuple[str, Any]] | None = None

    def dedupe(self, current_partition: Callable[[], int]) -> Dedupe:
        """A Dedupe over the table; `current_partition()` is the source partition of the record being checked."""

        def first_seen(key: str) -> int | None:
            value = self.table.get(key)
            return int(value[0]) if value else None

        def remember(key: str, now_ms: int) -> None:
            self.table[key] = [now_ms, current_partition()]

        return Dedupe(first_seen, remember, self.horizon_ms)

    def maybe_sweep(self, now_ms: int) -> int:
        """Delete up to `budget` keys' worth of expired entries, at most once per `sweep_every_ms`."""
        if now_ms - self._last_sweep < self.sweep_every_ms:
            return 0
        self._last_sweep = now_ms
        expired: list[tuple[str, int]] = []
        try:
            if self._cursor is None:
                self._cursor = iter(self.table.data.items())
            for _ in range(self.budget):
                key, value = next(self._cursor)
                if now_ms - int(value[0]) >= self.horizon_ms:
                    expired.append((key, int(value[1])))
        except StopIteration:
            self._cursor = None  # a full pass is done; the next sweep starts over
        except RuntimeError:
            self._cursor = None  # the in-memory store changed under the cursor; start over next time
        for key, partition in expired:
            del self.table.data[key]
            self.table.send_changelog(partition, key, None, value_serializer="raw")
        self.expired += len(expired)
        return len(expired)
