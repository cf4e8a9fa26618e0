"""Is Kafka answering? The worker and the sink wait for it before they start and watch it while they run.

Why: started before its broker (a machine's boot order, a broker being restarted), a worker or sink used to
exit with a traceback. Now it says so once, keeps its health port up (/healthz 200, /readyz 503 with the
reason), starts as soon as Kafka answers, and stops at once on SIGTERM meanwhile. Once running, the same
watch asks the broker for its metadata every second, so /readyz turns 503 while Kafka is away and 200 again
when it is back (the clients reconnect by themselves; this only tells the truth about them). And told to stop
while Kafka is away, they stop within STOP_GRACE_S instead of waiting for it (`cut_short_when_away`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from wxarchive.errors import BrokerError
from wxarchive.kafka_clients import probe

__all__ = ["KafkaWatch"]

log = logging.getLogger("wxarchive.kafka")
T = TypeVar("T")
RETRY_S = 2.0
REMIND_S = 60.0
CHECK_EVERY_S = 1.0
STOP_GRACE_S = 10.0
# what a Kafka client (or our helpers around one) raises when the broker is away or stops answering mid-call;
# anything else from a start (a ClickHouse that will not open, a bad setting) is not waited out
KAFKA_DOWN: tuple[type[BaseException], ...] = (KafkaError, BrokerError, asyncio.TimeoutError)


class Stopped(Exception):
    """The process was told to stop while it waited on Kafka."""


async def unless_stopped(awaitable: Awaitable[T], stopping: asyncio.Event) -> T:
    """`awaitable`'s result, or Stopped (after cancelling it) as soon as `stopping` is set: a SIGTERM is
    not kept waiting behind a connection attempt or a read that Kafka's absence drags out."""
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled():
        raise Stopped()
    return work.result()


def _waited(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class KafkaWatch:
    """Whether Kafka answered the last check, and why not; `reason` is what /readyz shows."""

    def __init__(self, bootstrap: str, *, retry_s: float = RETRY_S, remind_s: float = REMIND_S,
                 check_every_s: float = CHECK_EVERY_S, timeout: float = 3.0) -> None:
        self.bootstrap = bootstrap
        self.retry_s = retry_s
        self.remind_s = remind_s
        self.check_every_s = check_every_s
        self.timeout = timeout
        self.up = False
        self.reason = f"not connected to Kafka at {bootstrap} yet"
        self._down_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start_when_up(self, start: Callable[[], Awaitable[None]], stopping: asyncio.Event) -> bool:
        """Wait until Kafka answers, then `await start()`; if Kafka goes away during it, wait and call it again
        (so `start` must be safe to repeat). False when `stopping` was set first."""
        while True:
            try:
                await self._wait(stopping)
                await unless_stopped(start(), stopping)
            except Stopped:
                return False
            except KAFKA_DOWN as exc:
                self._down(f"Kafka at {self.bootstrap} went away while starting: {_describe(exc)}")
                log.warning(f"Kafka at {self.bootstrap} went away while starting; retrying every {self.retry_s:g}s",
                            extra={"error": _describe(exc)})
                try:
                    await unless_stopped(asyncio.sleep(self.retry_s), stopping)
                except Stopped:
                    return False
                continue
            self._up()
            return True

    async def _wait(self, stopping: asyncio.Event) -> None:
        """Probe until Kafka answers: one warning at first, then a reminder every `remind_s`, otherwise quiet."""
        began = time.monotonic()
        remind_at = began + self.remind_s
        warned = False
        while True:
            try:
                await unless_stopped(probe(self.bootstrap, self.timeout), stopping)
            except BrokerError as exc:
                self._down(f"Kafka at {self.bootstrap} is not reachable: {_describe(exc.__cause__ or exc)}")
                now = time.monotonic()
                if not warned:
                    log.warning(f"Kafka at {self.bootstrap} is not reachable; retrying every {self.retry_s:g}s")
                    warned = True
                elif now >= remind_at:
                    log.warning(f"still waiting for Kafka at {self.bootstrap}", extra={"waited": _waited(now - began)})
                    remind_at = now + self.remind_s
                await unless_stopped(asyncio.sleep(self.retry_s), stopping)
                continue
            if warned:
                log.info(f"Kafka at {self.bootstrap} answers; starting", extra={"waited": _waited(time.monotonic() - began)})
            return

    def follow(self, client: AIOKafkaClient) -> None:
        """Keep checking Kafka through a started client of the component (its producer's), in the background."""
        self._up()
        self._task = asyncio.create_task(self._follow(client))

    async def _follow(self, client: AIOKafkaClient) -> None:
        while not self._closing:  # a flag as well as cancel, which wait_for can swallow (gh-86296)
            await asyncio.sleep(self.check_every_s)
            try:
                await asyncio.wait_for(client.fetch_all_metadata(), self.timeout)
            except KAFKA_DOWN as exc:
                if self.up:
                    log.warning(f"Kafka at {self.bootstrap} stopped answering; not ready until it is back",
                                extra={"error": _describe(exc)})
                self._down(f"Kafka at {self.bootstrap} is not reachable: {_describe(exc)}")
                continue
            if not self.up:
                log.info(f"Kafka at {self.bootstrap} answers again",
                         extra={"away": _waited(time.monotonic() - (self._down_since or time.monotonic()))})
            self._up()

    async def cut_short_when_away(self, awaitable: Awaitable[None], what: str,
                                  stopping: asyncio.Event | None = None) -> bool:
        """Await `awaitable`; once `stopping` is set (None: from the start) and Kafka is away, give it at most
        STOP_GRACE_S more, then cancel it and return False. Why: faust's stop, aiokafka's offset commits and
        acknowledgements wait for a broker indefinitely, so a SIGTERM during an outage was never obeyed. Cutting
        them short loses nothing: what was not committed is read again at the next start (at-least-once), and
        its duplicates are dropped downstream (DESIGN invariant 2). Needs the watch still following Kafka."""
        work = asyncio.ensure_future(awaitable)
        try:
            if stopping is not None:
                stopper = asyncio.ensure_future(stopping.wait())
                await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
            deadline: float | None = None
            while not work.done():
                if not self.up:
                    deadline = deadline or time.monotonic() + STOP_GRACE_S
                    if time.monotonic() >= deadline:
                        work.cancel()
                        await asyncio.gather(work, return_exceptions=True)
                        log.warning(f"{what} cut short: Kafka at {self.bootstrap} is away; what was not committed "
                                    "is read again at the next start", extra={"waited_s": STOP_GRACE_S})
                        return False
                await asyncio.wait({work}, timeout=0.25)
        except BaseException:
            work.cancel()  # our own cancellation: take the work down with us
            raise
        work.result()
        return True

    def _down(self, reason: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
        self.up = False
        self.reason = reason

    def _up(self) -> None:
        self.up = True
        self.reason = ""
        self._down_since = None

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _describe(exc: BaseException) -> str:
    """`Type: message`, once (aiokafka's errors already start their text with their type's name)."""
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name
