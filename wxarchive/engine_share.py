"""How the embedded engine is shared between the sink's inserts and the door's readers: inserts first.

chdb hosts one engine per process and runs its queries on the same cores (measured: four concurrent 60 ms
queries took 158 ms in all), so a reader's long scan slows the sink, and a slowed sink is lag every reader then
sees. The sink marks each insert with `writing()`; a door query waits in `wait_turn()` before it starts and
between the blocks of its result while an insert is running or waiting, so an insert never queues behind
readers for more than the block each of them is producing. Readers are not starved: the sink inserts in
batches about a second apart (WXARCHIVE_SINK_BATCH_SECONDS) and each takes a fraction of that.

Thread-safe: inserts run on the sink's ClickHouse thread, readers on the door's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["EngineShare"]


class EngineShare:
    """Counts inserts under way; readers wait while there are any. `reader_wait_seconds` totals their waits."""

    def __init__(self) -> None:
        self._writers = 0
        self._idle = threading.Condition()
        self.reader_wait_seconds = 0.0

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._idle:
            self._writers += 1
        try:
            yield
        finally:
            with self._idle:
                self._writers -= 1
                if not self._writers:
                    self._idle.notify_all()

    def wait_turn(self, timeout: float) -> bool:
        """Block until no insert is under way (True) or `timeout` seconds passed (False: go on anyway, so a
        sink that inserts without pause slows readers down but never stops them)."""
        with self._idle:
            if not self._writers:
                return True
            started = time.monotonic()
            done = self._idle.wait_for(lambda: not self._writers, timeout)
            self.reader_wait_seconds += time.monotonic() - started
            return done
