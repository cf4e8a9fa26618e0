"""Delivering generated callbacks: to a JSONL file, or POSTed to an edge the way E云 would.

Posting keeps a bounded number of requests in flight, holds an optional rate, and re-pushes a callback the
edge did not accept (5xx or no answer), as E云 re-pushes; a 4xx is an answer (malformed input is refused on
purpose). Progress goes to stderr: one updating line on a terminal, a line every few seconds otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import aiohttp

__all__ = ["Progress", "post_all", "write_jsonl"]


class Progress:
    def __init__(self, total: int, stream: IO[str] | None = None, quiet: bool = False, every: float = 5.0) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.every = 0.25 if self.tty else every
        self.started = time.monotonic()
        self._last = self.started  # a run shorter than one interval shows no progress at all
        self._shown = False

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last < self.every) or (force and not self._shown):
            return
        self._last = now
        self._shown = True
        elapsed = max(now - self.started, 1e-9)
        line = f"{done}/{self.total} callbacks  {done / elapsed:,.0f}/s  {note}".rstrip()
        if self.tty:
            self.stream.write("\r" + line.ljust(79) + ("\n" if force else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def write_jsonl(bodies: Iterable[bytes], path: Path, progress: Progress) -> int:
    """One body per line. Bodies never contain a newline (JSON escapes it), malformed ones included."""
    count = 0
    with open(path, "wb") as out:
        for body in bodies:
            out.write(body)
            out.write(b"\n")
            count += 1
            if count % 1000 == 0:
                progress.update(count)
    progress.update(count, force=True)
    return count


async def post_all(
    bodies: list[bytes],
    url: str,
    *,
    concurrency: int = 16,
    rate: float = 0.0,
    attempts: int = 5,
    timeout: float = 6.0,
    progress: Progress,
) -> Counter[str]:
    """POST every body; count the final answers ("200", "400", … "error"). `rate` 0 means as fast as possible."""
    outcomes: Counter[str] = Counter()
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    started = time.monotonic()
    issued = 0
    lock = asyncio.Lock()

    async def pace() -> None:
        nonlocal issued
        if rate <= 0:
            return
        async with lock:
            issued += 1
            due = started + issued / rate
            delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                _, body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcome = "error"
            for attempt in range(attempts):
                await pace()
                try:
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                        await response.read()
                        outcome = str(response.status)
                        if response.status < 500:
                            break
                except (TimeoutError, aiohttp.ClientError):
                    outcome = "error"
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))  # E云 re-pushes what was not accepted
            outcomes[outcome] += 1
            progress.update(sum(outcomes.values()), note=_note(outcomes))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    progress.update(sum(outcomes.values()), note=_note(outcomes), force=True)
    return outcomes


def _note(outcomes: Counter[str]) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(outcomes.items()))
