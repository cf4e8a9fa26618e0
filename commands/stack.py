"""`wxarchive up`: the whole archive on one machine, started in order and stopped in reverse.

Kafka: a broker already answering at the bootstrap address is used as it is; a loopback address with no
broker gets the local one, started here and stopped again on exit; any other address must answer.
E云: the fake API (the simulator's directory) unless WXARCHIVE_EYUN_URL names a real one.
The edge, the worker and the read-side API run as child processes (each has a core's worth of work and its own
health port; their logs go to DATA_DIR/logs); the API starts once the sink's door answers, with an admin token
for this stack made once and kept in DATA_DIR/admin-token (commands/admin_token.py). The sink runs in this
process, because in embedded mode the process that writes the chdb directory must be the one that reads it
(DESIGN invariant 5): `up --demo` reports from it.

While it runs, `up` reads the worker's /metrics every few seconds and says when something a person should
act on starts or ends (the E云 circuit breaker open: every message archived without names; Kafka not
answering the worker), since the worker's own warning goes to its log file, which nobody is watching.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from commands.admin_token import local_admin_token, token_file
from deploy.kafka_broker import BrokerSpec, LocalKafka
from sinks.service import SinkService, serve as serve_sink
from sinks.sink import Sink
from wxarchive.clickhouse import parse_dsn
from wxarchive.config import Settings, env_name
from wxarchive.errors import BrokerError, PrerequisiteError
from wxarchive.kafka_clients import probe_sync
from wxarchive.net import require_free_port

__all__ = ["Component", "Stack", "served_locally", "worker_flags"]

CHILD_READY_TIMEOUT_S = 90.0
WATCH_EVERY_S = 5.0


def served_locally(bootstrap: str) -> bool:
    """True when every bootstrap server is a loopback address, which the local broker may serve."""
    for server in bootstrap.split(","):
        host = server.strip().rpartition(":")[0].strip("[]")
        if host != "localhost":
            try:
                if not ipaddress.ip_address(host).is_loopback:
                    return False
            except ValueError:
                return False
    return True


@dataclass
class Component:
    name: str
    healthy: bool
    where: str
    detail: str
    flags: dict[str, str] = field(default_factory=dict)  # what needs attention now, by kind: a line each in the report


# what `up` says when a worker flag clears
CLEARED = {"eyun_breaker": "E云 circuit breaker closed again: lookups resume",
           "kafka": "Kafka answers the worker again"}


async def worker_flags(metrics_url: str) -> dict[str, str]:
    """What the worker's /metrics shows that a person running the stack must hear about, by kind; {} when all is
    well (or the page cannot be read: the worker's own exit is reported by `Stack.wait`)."""
    try:
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(metrics_url) as response:
            text = await response.text()
        values = {sample.name: sample.value for family in text_string_to_metric_families(text)
                  for sample in family.samples if not sample.labels}
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return {}
    flags = {}
    if values.get("wxarchive_worker_eyun_breaker_open"):
        opened = int(values.get("wxarchive_worker_eyun_breaker_opened_total", 0))
        flags["eyun_breaker"] = (f"E云 circuit breaker OPEN: lookups failing, messages archived without names "
                                 f"(opened {opened} time{'s' if opened != 1 else ''}; see the worker's log)")
    if values.get("wxarchive_worker_kafka_up") == 0:
        flags["kafka"] = "Kafka not answering the worker"
    return flags


@dataclass
class Stack:
    settings: Settings
    directory_seed: int = 1
    directory_accounts: int = 3
    components: list[Component] = field(default_factory=list)
    sink: Sink | None = None
    edge_url: str = ""
    admin_token: str = ""
    _parts: AsyncExitStack = field(default_factory=AsyncExitStack)  # what start() started, stopped in reverse
    _sink_service: SinkService | None = None
    _children: list[tuple[str, asyncio.subprocess.Process]] = field(default_factory=list)

    async def start(self, prepare: Callable[[Settings], Awaitable[object]] | None = None) -> None:
        """Start every part in dependency order; on any failure stop what was started and raise.
        `prepare(settings)` runs once Kafka answers, before anything reads from it."""
        s = self.settings
        ports = [(s.sink_host, s.sink_port, "sink_port"), (s.edge_host, s.edge_port, "edge_port"),
                 (s.worker_host, s.worker_port, "worker_port"), (s.api_host, s.api_port, "api_port")]
        if s.edge_ops_port:
            ports.append((s.edge_ops_host, s.edge_ops_port, "edge_ops_port"))
        if s.door_port and parse_dsn(s.clickhouse_dsn).embedded:
            ports.append((s.door_host, s.door_port, "door_port"))
        for host, port, name in ports:
            require_free_port(host, port, f"set {env_name(name)} to another port")  # before starting anything
        try:
            await self._start_kafka()
            if prepare is not None:
                await prepare(self.settings)
            await self._start_eyun()
            await self._start_sink()
            await self._start_api()
            await self._start_edge()
            await self._start_worker()
        except BaseException:
            await self.stop()
            raise

    async def _start_kafka(self) -> None:
        bootstrap = self.settings.kafka_bootstrap
        try:
            topics = await asyncio.to_thread(probe_sync, bootstrap, timeout=3.0)
            self.components.append(Component("kafka", True, bootstrap, f"existing broker, {len(topics)} topics"))
            return
        except BrokerError:
            if not served_locally(bootstrap):
                raise BrokerError(
                    f"Kafka at {bootstrap} is not answering; start it, or unset {env_name('kafka_bootstrap')} "
                    "to use the local broker"
                ) from None
        broker = LocalKafka(BrokerSpec.from_settings(self.settings))
        state = await asyncio.to_thread(broker.start, progress=True)
        self._parts.push_async_callback(asyncio.to_thread, broker.stop)
        rss = f", RSS {state.rss_mb:.0f} MB" if state.rss_mb else ""
        self.components.append(
            Component("kafka", state.ready, bootstrap,
                      f"local Apache Kafka {state.version}, pid {state.pid}, ready in {state.seconds:.1f}s{rss}"))

    async def _start_eyun(self) -> None:
        if self.settings.eyun_url:
            self.components.append(Component("eyun", True, self.settings.eyun_url, "configured E云 API"))
            return
        from eyun.directory import Directory
        from eyun.fake_server import DEFAULT_TOKEN, FakeEyun, serve

        fake = FakeEyun(Directory.generate(seed=self.directory_seed, accounts=self.directory_accounts))
        runner, url = await serve(fake)
        self._parts.push_async_callback(runner.cleanup)
        self.settings = replace(self.settings, eyun_url=url, eyun_token=self.settings.eyun_token or DEFAULT_TOKEN)
        accounts = ", ".join(a.wc_id for a in fake.directory.accounts)
        self.components.append(Component("eyun", True, url, f"fake E云 API, accounts {accounts}"))

    async def _start_sink(self) -> None:
        service = await self._parts.enter_async_context(serve_sink(self.settings))
        if not await service.started():
            raise PrerequisiteError("the sink stopped while starting")
        self._sink_service, self.sink = service, service.sink
        self.components.append(Component("sink", True, service.ops_url,
                                         f"in this process, into {service.sink.clickhouse_display}"))
        if service.door is not None:
            self.components.append(Component("door", True, service.door.url,
                                             "the archive, read-only, for any ClickHouse client (user:password in the URL)"))

    async def _start_api(self) -> None:
        """The read-side API, in its own process once the sink (and its door) answers, with an admin token for
        this stack made once and kept in DATA_DIR/admin-token."""
        s = self.settings
        self.admin_token = await local_admin_token(s)
        url = f"http://{s.api_host}:{s.api_port}"
        await self._start_child("api", ["api"], f"{url}/readyz")
        self.components.append(Component("api", True, f"{url}/docs",
                                         f"admin token {self.admin_token}, kept in {token_file(s)}"))

    async def _start_edge(self) -> None:
        s = self.settings
        secured = bool(s.edge_secret or s.edge_account_secrets)
        base = f"http://{s.edge_host}:{s.edge_port}"
        self.edge_url = f"{base}/callback/{s.edge_secret}" if s.edge_secret else f"{base}/callback"
        ops = f"http://{s.edge_ops_host}:{s.edge_ops_port}" if s.edge_ops_port else base
        await self._start_child("edge", ["edge", *([] if secured else ["--insecure"])], f"{ops}/readyz")
        shown = f"{base}/callback/****" if s.edge_secret else f"{base}/callback"
        self.components.append(Component("edge", True, shown, "no secret: loopback use only" if not secured
                                         else "callbacks need the secret"))

    async def _start_worker(self) -> None:
        s = self.settings
        url = f"http://{s.worker_host}:{s.worker_port}"
        await self._start_child("worker", ["worker"], f"{url}/readyz")
        self.components.append(Component("worker", True, f"{url}/metrics", f"dedupe state {s.worker_store}",
                                         await worker_flags(f"{url}/metrics")))

    @staticmethod
    async def watch_worker(worker: Component, say: Callable[[str], None], every_s: float = WATCH_EVERY_S) -> None:
        """Every `every_s`, re-read the worker's flags; `say` each one that appears or clears, as it happens."""
        while True:
            await asyncio.sleep(every_s)
            now = await worker_flags(worker.where)
            for kind in now.keys() - worker.flags.keys():
                say(f"worker: {now[kind]}")
            for kind in worker.flags.keys() - now.keys():
                say(f"worker: {CLEARED[kind]}")
            worker.flags = now

    async def _start_child(self, name: str, args: list[str], ready_url: str) -> None:
        """A `wxarchive` subcommand in its own process, with this stack's settings; ready when /readyz says so."""
        logs = self.settings.data_dir.resolve() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        env = {**os.environ, **self.settings.as_env()}
        with open(log_path, "ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "commands", *args, env=env, stdout=log_file, stderr=log_file,
                stdin=asyncio.subprocess.DEVNULL)
        self._children.append((name, proc))
        self._parts.push_async_callback(_terminate, proc)
        deadline = asyncio.get_running_loop().time() + CHILD_READY_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if proc.returncode is not None:
                    raise PrerequisiteError(f"the {name} exited with code {proc.returncode} while starting:\n"
                                            f"{_tail(log_path)}")
                try:
                    async with session.get(ready_url) as response:
                        if response.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise PrerequisiteError(f"the {name} was not ready within {CHILD_READY_TIMEOUT_S:.0f}s "
                                            f"(log: {log_path}):\n{_tail(log_path)}")
                await asyncio.sleep(0.25)

    async def wait(self, stop: asyncio.Event, say: Callable[[str], None] = lambda line: print(line, flush=True)
                   ) -> str:
        """Until `stop` is set (""), or until a part ends on its own (what ended, for the user); meanwhile
        `say` what the worker reports that needs attention (watch_worker)."""
        watched: dict[asyncio.Future[object], str] = {asyncio.ensure_future(stop.wait()): ""}
        for component in self.components:
            if component.name == "worker":
                watched[asyncio.ensure_future(self.watch_worker(component, say))] = ""  # never ends by itself
        if self._sink_service is not None:
            watched[self._sink_service.finished] = "the sink stopped"  # type: ignore[index]
        for name, proc in self._children:
            log_path = self.settings.data_dir.resolve() / "logs" / f"{name}.log"
            watched[asyncio.ensure_future(proc.wait())] = f"the {name} exited (log: {log_path})"
        done, pending = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            if self._sink_service is None or future is not self._sink_service.finished:
                future.cancel()
        return watched[next(iter(done))]

    def report(self) -> str:
        width = max(len(c.name) for c in self.components)
        lines = []
        for c in self.components:
            lines.append(f"  {c.name:<{width}}  {'ready' if c.healthy else 'DOWN '}  {c.where}  ({c.detail})")
            lines.extend(f"  {'':<{width}}  !! {flag}" for flag in c.flags.values())
        return "\n".join(lines)

    @property
    def healthy(self) -> bool:
        return bool(self.components) and all(c.healthy for c in self.components)

    async def stop(self) -> None:
        """Stop in reverse order of starting: children (SIGTERM, then SIGKILL), the sink (it flushes), the fake,
        the broker. Safe to call again."""
        await self._parts.aclose()
        self._children.clear()
        self._sink_service, self.sink = None, None


async def _terminate(proc: asyncio.subprocess.Process, timeout_s: float = 30.0) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
