"""A circuit breaker: after repeated failures stop calling for a while, then let one trial call through.

Why: when E云 is down or throttling, every enrichment lookup would otherwise wait out its retries and
timeouts, and the worker would stall behind them. Open, the breaker fails calls at once, so messages keep
flowing (marked not enriched) and E云 gets room to recover.

An outage is counted once (`openings`), from the first opening until a call succeeds again; a failed trial
re-opens the breaker (`opened_count` counts those too) but is the same outage, so whoever reports on the
breaker (the enricher's warning, the worker's metrics) says it once per outage, not every cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.opened_count = 0  # every opening, re-openings after a failed trial included
        self.openings = 0  # openings from closed: one per outage
        self.outage_began: float | None = None  # clock() at the opening that began the current outage

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial call at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False
        self.outage_began = None

    def failure(self) -> None:
        """A failed trial re-opens at once; in closed state, `threshold` failures in a row open it."""
        self._failures += 1
        tripped = self._trial_in_flight or (self._opened_at is None and self._failures >= self.threshold)
        self._trial_in_flight = False
        if tripped:
            self.opened_count += 1
            self._opened_at = self._clock()
            if self.outage_began is None:
                self.openings += 1
                self.outage_began = self._opened_at
