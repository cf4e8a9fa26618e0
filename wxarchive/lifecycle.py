"""One lifecycle for every long-running component: `start()`, an idempotent `stop()`, and `async with`.

A component's service (`ingest/service.py`, `streams/service.py`, `sinks/service.py`) subclasses `Service`;
runners hold it with `async with` (`wxarchive up` composes several in an AsyncExitStack, which stops them in
reverse order). A start that fails part-way is stopped before the error goes on, so nothing is left running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["Service", "settle", "wait_started"]

S = TypeVar("S", bound="Service")


class Service:
    """Subclasses implement start() and stop(); stop() must be safe after a partial start and when repeated.
    `ops_url` is where the service's /healthz, /readyz and /metrics answer, once started."""

    ops_url: str = ""
    _ops: web.AppRunner | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def close_ops(self) -> None:
        """Stop serving the health and metrics port (once)."""
        ops, self._ops = self._ops, None
        if ops is not None:
            await ops.cleanup()

    async def __aenter__(self: S) -> S:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


async def settle(task: asyncio.Future[Any] | None) -> None:
    """Wait for a background task to end, whatever it ended with (its owner reports its error elsewhere)."""
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


async def wait_started(started: Callable[[], bool], task: asyncio.Future[Any], what: str, timeout_s: float) -> None:
    """Wait until `started()` (a server in `task` is listening); the task's own error if it ended first, a
    TimeoutError naming `what` if it took longer than `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not started():
        if task.done():
            task.result()
            raise RuntimeError(f"the {what} stopped during start-up")
        if loop.time() > deadline:
            raise TimeoutError(f"the {what} did not start within {timeout_s:g}s")
        await asyncio.sleep(0.02)
