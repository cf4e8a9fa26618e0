"""The API as a service: the principals followed, the audit producer connected, the readers ready, uvicorn serving
the app in this event loop; stopped in reverse.

`serve(settings)` holds a running API for whoever composes it (tests, and `wxarchive api`, which `wxarchive up`
starts in its own process after the sink, like the edge and the worker: the API has a core's worth of JSON to write
and must not share the sink's process, where the embedded engine runs). `run` is `wxarchive api`: SIGINT and
SIGTERM stop it gracefully (requests in flight finish, then the clients close).

`--insecure` (no tokens) is refused unless the API listens on a loopback address: anyone who can reach a
non-loopback address would read the whole archive as admin. It logs a warning at start, and every audit record
names the principal "insecure".
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Iterator

import uvicorn

from access.audit import AuditLog
from access.principals import PrincipalStore
from api.app import build_app
from api.clickhouse import ArchiveReader
from api.context import ApiContext, SqlLimits
from api.keywords import KeywordList
from api.metrics import ApiMetrics
from door.reader import reader_dsn
from wxarchive.config import Settings, env_name, mask_dsn
from wxarchive.errors import ConfigError
from wxarchive.lifecycle import Service, wait_started
from wxarchive.topics import RAW

__all__ = ["ApiService", "loopback", "run", "serve"]

log = logging.getLogger("wxarchive.api")

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
ARCHIVE_THREADS = 4  # the door runs 4 queries at once by default; more threads would only queue there
SQL_THREADS = 2      # analysts' queries on their own, so a slow one does not hold the conversation routes up


def loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn's server, leaving signals to whoever runs the service (`run` below, or `up`'s child process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiService(Service):
    """A running API: `url` (where it answers), `context` (its readers, audit log, principals, metrics).
    `audit_settings` points the audit trail elsewhere than `settings` (a test's dead broker)."""

    def __init__(self, settings: Settings, *, insecure: bool = False, audit_settings: Settings | None = None,
                 audit_timeout_s: float = 5.0, port: int | None = None) -> None:
        if insecure and not loopback(settings.api_host):
            raise ConfigError(f"--insecure serves the archive without tokens, so only on a loopback address; "
                              f"{env_name('api_host')} is {settings.api_host}")
        self.settings = settings
        self.insecure = insecure
        metrics = ApiMetrics()
        self.audit = AuditLog(audit_settings or settings, timeout=audit_timeout_s, metrics=metrics.audit)
        self.principals = None if insecure else PrincipalStore(settings)

        def dsn() -> str:
            return reader_dsn(settings)

        self.context = ApiContext(
            archive=ArchiveReader(dsn, threads=ARCHIVE_THREADS),
            sql=ArchiveReader(dsn, threads=SQL_THREADS, timeout_s=settings.api_sql_timeout + 1, name="sql"),
            sql_limits=SqlLimits(settings.api_sql_max_rows, settings.api_sql_max_bytes, settings.api_sql_timeout),
            audit=self.audit, principals=self.principals, keywords=KeywordList(settings), raw_topic=RAW.name(settings),
            metrics=metrics, uins=settings.uin_accounts(), settings=settings)
        self.app = build_app(self.context)
        self._server = _Server(uvicorn.Config(
            self.app, host=settings.api_host, port=settings.api_port if port is None else port, lifespan="off",
            access_log=False, log_level="warning", server_header=False, timeout_graceful_shutdown=10))
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> None:
        if self.insecure:
            log.warning("API running WITHOUT TOKENS (--insecure): anyone who can reach %s may read the whole "
                        "archive as admin; every audit record names the principal 'insecure'", self.settings.api_host)
        if self.principals is not None:
            await self.principals.start()
        await self.audit.start()
        self._task = asyncio.create_task(self._server.serve(), name="api")
        await wait_started(lambda: self._server.started, self._task, "API", START_TIMEOUT_S)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    @property
    def finished(self) -> asyncio.Task[None]:
        """uvicorn's run: done when the server stopped (stop(), or a signal in `run`)."""
        assert self._task is not None
        return self._task

    def request_stop(self) -> None:
        self._server.should_exit = True

    async def stop(self) -> None:
        self._server.should_exit = True
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), STOP_TIMEOUT_S)
        if self.principals is not None:
            await self.principals.stop()
        await self.audit.close()
        await asyncio.to_thread(self.context.archive.close)
        await asyncio.to_thread(self.context.sql.close)


def serve(settings: Settings, insecure: bool = False) -> ApiService:
    """The API, to be held with `async with`."""
    return ApiService(settings, insecure=insecure)


def run(settings: Settings, insecure: bool = False) -> None:
    """`wxarchive api`: serve until SIGINT or SIGTERM, then finish the requests in flight and close the clients."""

    async def main() -> None:
        async with serve(settings, insecure) as service:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, service.request_stop)
            tokens = "NO TOKENS (--insecure)" if insecure else "bearer tokens"
            print(f"api listening on {service.url} ({tokens}; docs at {service.url}/docs; reading "
                  f"{mask_dsn(reader_dsn(settings))})", flush=True)
            await service.finished

    asyncio.run(main())
