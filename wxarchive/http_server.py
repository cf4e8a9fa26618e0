"""Serving an aiohttp application from inside a running event loop, on a given or any free port."""

from __future__ import annotations

from aiohttp import web

__all__ = ["serve_app"]


async def serve_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start `app` (port 0: any free port); return the runner, for cleanup(), and the base URL it answers on."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)  # aiohttp waits up to 60 s by default
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}"
