"""The chaos harness: the whole write path as real processes under steady E云-like load, its parts killed in turn.

Why a harness of its own rather than `wxarchive up`: `up` runs the sink inside itself and ends when any part
exits, while a chaos run kills each part with SIGKILL (the broker included), brings it back, and then needs the
chdb directory to itself to check the archive. So the harness starts what `up` starts, as separate processes:
a local broker it owns (deploy/kafka_broker.py), the fake E云 in this process, and `wxarchive edge --spool`,
`wxarchive worker` and `wxarchive sink` as child processes configured by WXARCHIVE_* variables.

The load is the simulator's callbacks (eyun/traffic.py), posted at a steady rate through a pool of HTTP
connections and re-posted, with backoff and up to a limit, on 5xx, refused or reset connections and timeouts,
as E云 does. Every attempt is logged, so each fault's figures come from what the sender saw.

At the end (everything stopped but the broker) the archive is read with `wxarchive sql`, the way a user reads
it, and compared with what the sender was told and with the simulator's truth: every body answered 200 is in
`raw_callbacks`, the views hold exactly the simulator's unique messages and events, every body refused with a
4xx is a dead letter, and no (account, identity) shows twice. Losses and duplicates are attributed to the fault
during which their callback was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.kafka_broker import LocalKafka
from eyun.directory import Directory
from eyun.fake_server import DEFAULT_TOKEN, FakeEyun, serve
from eyun.traffic import Summary, TrafficConfig, TrafficGenerator
from tests.conftest import broker_spec
from wxarchive.config import Settings
from wxarchive.net import free_ports

__all__ = ["ChaosConfig", "FAULTS", "run_chaos"]

FAULTS = ("worker", "sink", "edge", "broker", "disk")
RETRIED = frozenset({"refused", "reset", "timeout"})  # besides any 5xx: what E云 re-posts
SECRET = "chaos-secret"
EDGE_ID = "chaos-edge"
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ChaosConfig:
    """One run's size and pace. The defaults are the `make test` run: each fault once, about 2.5 minutes."""

    count: int = 14_000          # simulated callbacks; at `rate` they must outlast the faults (a check says so)
    rate: float = 100.0          # first posts per second; re-posts come on top, as with E云
    seed: int = 20261121
    accounts: int = 3
    connections: int = 32        # the sender's connection pool
    attempts: int = 12           # posts per callback before the sender gives up on it
    request_timeout_s: float = 6.0  # E云 gives a callback six seconds
    rounds: int = 1
    faults: tuple[str, ...] = FAULTS
    settle_s: float = 2.0        # steady load before the first fault and after each recovery
    down_s: float = 2.0          # how long a killed process stays down
    broker_down_s: float = 3.0
    disk_full_s: float = 4.0     # how long the spool's file stays at its size limit
    catch_up_timeout_s: float = 60.0  # after a fault: longer than this and the archive is reported not caught up
    partitions: int = 4


# -- the sender --------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    started: float
    ended: float
    outcome: str  # an HTTP status ("200", "503", "400"), or "refused", "reset", "timeout"
    error: str = ""  # for a post without an answer: the client's exception, to tell kinds of reset apart

    @property
    def failed(self) -> bool:
        """What E云 would post again: a 5xx or no answer. A 4xx is an answer."""
        return self.outcome in RETRIED or self.outcome.startswith("5")


@dataclass
class Callback:
    """One simulated callback and what became of it at the sender."""

    index: int
    body: bytes
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = ""            # the final answer ("200", "400", …), or "gave up"
    answered_at: float = 0.0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class Sender:
    """Posts callbacks like E云: a pool of connections, a steady rate of first posts, and re-posts with backoff.

    The rate holds whatever the edge does (open loop, up to the pool's size in flight), so a fault meets the
    load it would meet in production; `hurry()` drops the rate once the faults are over, so a run does not
    spend minutes posting its tail."""

    def __init__(self, bodies: list[bytes], url: str, config: ChaosConfig) -> None:
        self.callbacks = [Callback(i, body) for i, body in enumerate(bodies)]
        self.url = url
        self.config = config
        self._hurry = asyncio.Event()
        self._next = 0
        self._issued = 0
        self._paced_from = 0.0
        self._rng = random.Random(config.seed)

    def hurry(self) -> None:
        self._hurry.set()

    @property
    def remaining(self) -> int:
        return len(self.callbacks) - self._next

    def attempts_between(self, start: float, end: float) -> list[Attempt]:
        """The attempts that ended in [start, end): a post that a fault cut short belongs to the fault."""
        return [a for c in self.callbacks for a in c.attempts if start <= a.ended < end]

    async def run(self) -> None:
        self._paced_from = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        connector = aiohttp.TCPConnector(limit=self.config.connections)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.gather(*(self._post_loop(http) for _ in range(self.config.connections)))

    async def _post_loop(self, http: aiohttp.ClientSession) -> None:
        while self._next < len(self.callbacks):
            callback = self.callbacks[self._next]
            self._next += 1
            await self._pace()
            await self._deliver(http, callback)

    async def _pace(self) -> None:
        if self._hurry.is_set():
            return
        self._issued += 1
        delay = self._paced_from + self._issued / self.config.rate - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), delay)

    async def _deliver(self, http: aiohttp.ClientSession, callback: Callback) -> None:
        for n in range(self.config.attempts):
            attempt = await self._post(http, callback.body)
            callback.attempts.append(attempt)
            if not attempt.failed:
                callback.outcome, callback.answered_at = attempt.outcome, attempt.ended
                return
            # E云 re-pushes later; jitter keeps a pool of re-posts from arriving in lockstep
            await asyncio.sleep(min(2.0, 0.1 * 2 ** n) * (0.75 + self._rng.random() / 2))
        callback.outcome, callback.answered_at = "gave up", callback.attempts[-1].ended

    async def _post(self, http: aiohttp.ClientSession, body: bytes) -> Attempt:
        started = time.monotonic()
        error = ""
        try:
            async with http.post(self.url, data=body, headers={"Content-Type": "application/json"}) as response:
                await response.read()
                outcome = str(response.status)
        except aiohttp.ClientConnectorError as exc:
            outcome, error = "refused", type(exc).__name__
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            outcome, error = "reset", f"{type(exc).__name__}: {exc}"
        except TimeoutError:
            outcome = "timeout"
        return Attempt(started, time.monotonic(), outcome, error)


# -- the processes -----------------------------------------------------------------------------------------


class Child:
    """One `wxarchive` subcommand as a child process. Its output reaches its log file through a pipe read here,
    not by inheriting the file: the disk fault lowers the edge's file-size limit, which would stop its log too.
    Starting, killing and stopping hold a lock, so the supervisor never restarts a part the harness is itself
    restarting (two sinks would fight over the port and the chdb directory)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path, probe_url: str) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.probe_url = probe_url
        self.proc: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()
        self.taken_down = False  # killed or stopped by the harness, so not ended on its own
        self._spawned: list[asyncio.subprocess.Process] = []
        self._copiers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"the {self.name} was never started"
        return self.proc.pid

    @property
    def exited_on_its_own(self) -> bool:
        return (self.proc is not None and self.proc.returncode is not None and not self.taken_down
                and not self.lock.locked())

    async def start(self) -> None:
        async with self.lock:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "commands", *self.args, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            self._spawned.append(proc)
            assert proc.stdout is not None
            self._copiers.append(asyncio.create_task(self._copy(proc.stdout)))
            self.proc, self.taken_down = proc, False

    async def _copy(self, stream: asyncio.StreamReader) -> None:
        with open(self.log_path, "ab") as log:
            while chunk := await stream.read(65536):
                log.write(chunk)
                log.flush()

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"the {self.name} exited with code {self.proc.returncode} while starting:\n"
                                   f"{tail(self.log_path)}")
            try:
                async with http.get(self.probe_url) as response:
                    if response.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} was not ready within {timeout:.0f}s:\n{tail(self.log_path)}")
            await asyncio.sleep(0.2)

    async def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, as when the OOM killer or a power cut takes the process."""
        async with self.lock:
            assert self.proc is not None
            self.taken_down = True
            if self.proc.returncode is None:
                self.proc.kill()
            await self.proc.wait()

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and the part's own shutdown (the sink flushes and commits); SIGKILL if it hangs. Any process
        of this part still running (there should be none) is killed too, so a run never leaves one behind."""
        async with self.lock:
            self.taken_down = True
            code = 0
            if self.proc is not None:
                if self.proc.returncode is None:
                    self.proc.terminate()
                    try:
                        await asyncio.wait_for(self.proc.wait(), timeout)
                    except TimeoutError:
                        self.proc.kill()
                code = await self.proc.wait()
            for proc in self._spawned:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await asyncio.gather(*self._copiers, return_exceptions=True)
            self._copiers.clear()
            return code


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ChaosStack:
    """The broker, the fake E云 and the three child processes of one run, in a fresh directory.

    A part that exits without being killed by the harness is noted (a user of `wxarchive up` would see the
    whole stack stop) and started again, as a service manager would, so the run can go on and say what else
    it saw."""

    def __init__(self, workdir: Path, config: ChaosConfig) -> None:
        self.workdir = workdir
        self.config = config
        self.broker = LocalKafka(broker_spec(workdir / "kafka"))
        edge_port, worker_port, sink_port = free_ports(3)
        self.settings = Settings.load(env={
            "WXARCHIVE_DATA_DIR": str(workdir / "var"),
            "WXARCHIVE_KAFKA_BOOTSTRAP": self.broker.spec.bootstrap,
            "WXARCHIVE_KAFKA_PARTITIONS": str(config.partitions),
            "WXARCHIVE_TOPIC_PREFIX": "chaos",
            "WXARCHIVE_EDGE_PORT": str(edge_port), "WXARCHIVE_EDGE_SECRET": SECRET, "WXARCHIVE_EDGE_ID": EDGE_ID,
            "WXARCHIVE_EDGE_SPOOL": "true",
            "WXARCHIVE_WORKER_PORT": str(worker_port), "WXARCHIVE_SINK_PORT": str(sink_port),
            **{k: v for k, v in os.environ.items() if k == "WXARCHIVE_KAFKA_CACHE_DIR"},
        })
        self.edge_url = f"http://127.0.0.1:{edge_port}"
        self.callback_url = f"{self.edge_url}/callback/{SECRET}"
        s = self.settings  # /healthz and /metrics are on the callback port unless the edge has an ops port
        self.edge_ops_url = f"http://{s.edge_ops_host}:{s.edge_ops_port}" if s.edge_ops_port else self.edge_url
        self.spool_log = self.settings.data_dir / "edge-spool" / EDGE_ID / "spool.log"
        self.logs = workdir / "logs"
        self.children: dict[str, Child] = {}
        self.unexpected_exits: list[tuple[float, str, int]] = []
        self._fake_runner: object | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env()}

    async def start(self, directory: Directory) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        await asyncio.to_thread(self.broker.start, 120.0)
        self._fake_runner, eyun_url = await serve(FakeEyun(directory))
        self.settings = Settings.load(env={**self.settings.as_env(), "WXARCHIVE_EYUN_URL": eyun_url,
                                           "WXARCHIVE_EYUN_TOKEN": DEFAULT_TOKEN})
        s = self.settings
        specs = {"sink": (["sink"], f"http://127.0.0.1:{s.sink_port}/readyz"),
                 "worker": (["worker"], f"http://127.0.0.1:{s.worker_port}/readyz"),
                 # /healthz, not /readyz: the edge is restarted while the broker is down too, and must take callbacks
                 "edge": (["edge", "--spool"], f"{self.edge_ops_url}/healthz")}
        for name, (args, probe) in specs.items():
            self.children[name] = Child(name, args, self.env(), self.logs / f"{name}.log", probe)
        await asyncio.gather(*(self.restart(name) for name in self.children))  # each makes the topics it needs
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(0.5)  # also a restart's backoff, should a part keep failing
            for name, child in self.children.items():
                if child.exited_on_its_own:
                    assert child.proc is not None and child.proc.returncode is not None
                    self.unexpected_exits.append((time.monotonic(), name, child.proc.returncode))
                    await child.start()

    async def kill(self, name: str) -> None:
        await self.children[name].kill9()

    async def restart(self, name: str) -> float:
        """Start a part (again, after a kill); returns when it is ready."""
        child = self.children[name]
        await child.start()
        await child.wait_ready(self.http)
        return time.monotonic()

    async def kill_broker(self) -> None:
        pid = int(self.broker.pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        while (await asyncio.to_thread(self.broker.status, 0.5)).running:  # reaps the process once it is gone
            await asyncio.sleep(0.05)

    async def restart_broker(self) -> float:
        await asyncio.to_thread(self.broker.start, 120.0)
        return time.monotonic()

    def limit_edge_file_size(self, soft: int) -> None:
        """The spool's disk is full: the edge may write no file beyond `soft` bytes (EFBIG; Python ignores
        SIGXFSZ). Lowering a soft limit of one's own process needs no privilege."""
        resource.prlimit(self.children["edge"].pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))

    def free_edge_disk(self) -> None:
        resource.prlimit(self.children["edge"].pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    async def metric(self, base_url: str, name: str) -> float | None:
        """One sample of a Prometheus metric (the first labelled or bare line), or None if the part is away."""
        try:
            async with self.http.get(f"{base_url}/metrics") as response:
                text = (await response.read()).decode()
        except (TimeoutError, aiohttp.ClientError):
            return None
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")):
                return float(line.rsplit(" ", 1)[1])
        return None

    async def spool_records(self) -> float | None:
        return await self.metric(self.edge_ops_url, "wxarchive_edge_spool_records")

    async def stop_parts(self) -> dict[str, int]:
        """Stop the children (edge first, so nothing new arrives; the sink last, so it flushes all)."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        return {name: await self.children[name].stop() for name in ("edge", "worker", "sink") if name in self.children}

    async def close(self) -> None:
        """Everything down, whatever state the run left it in."""
        await self.stop_parts()
        if self._fake_runner is not None:
            await self._fake_runner.cleanup()  # type: ignore[attr-defined]
            self._fake_runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        await asyncio.to_thread(self.broker.stop)


# -- how far the archive has got ----------------------------------------------------------------------------


class ArchiveWatch:
    """How far the archive has got, asked of Kafka itself (high-water marks and the consumer groups' committed
    offsets), so it can be read while any part is down: the sink's own metrics die with it. The worker and
    sink commit only after their outputs are durable (DESIGN invariant 1), so a committed offset is progress."""

    OUTPUTS = ("raw", "messages", "events", "moderation", "contacts", "dlq")

    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        self.prefix = stack.settings.topic_prefix
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            bootstrap = self.stack.settings.kafka_bootstrap
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                        enable_auto_commit=False)
            try:
                await asyncio.wait_for(admin.start(), 5)
                await asyncio.wait_for(consumer.start(), 5)
            except BaseException:
                await admin.close()
                await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
        if self._consumer is not None:
            await self._consumer.stop()
        self._admin = self._consumer = None

    async def _ask(self, question: Callable[[AIOKafkaAdminClient, AIOKafkaConsumer], Awaitable[dict[TopicPartition, int]]]
                   ) -> dict[TopicPartition, int] | None:
        """The answer, or None while the broker is away (the clients are made afresh next time)."""
        try:
            admin, consumer = await self._clients()
            return await asyncio.wait_for(question(admin, consumer), 5)
        except Exception:  # noqa: BLE001 - any trouble talking to a broker that is being killed means "ask again"
            await self.close()
            return None

    async def high_water(self, *suffixes: str) -> dict[TopicPartition, int] | None:
        tps = [TopicPartition(f"{self.prefix}.{s}", p) for s in suffixes for p in range(self.stack.config.partitions)]

        async def ask(_: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
            return dict(await consumer.end_offsets(tps))
        return await self._ask(ask)

    async def committed(self, group: str) -> dict[TopicPartition, int] | None:
        async def ask(admin: AIOKafkaAdminClient, _: AIOKafkaConsumer) -> dict[TopicPartition, int]:
            return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
        return await self._ask(ask)

    async def _until(self, check: Callable[[], Awaitable[bool]], deadline: float) -> bool:
        while time.monotonic() < deadline:
            if await check():
                return True
            await asyncio.sleep(0.25)
        return False

    async def _passed(self, group: str, marks: dict[TopicPartition, int]) -> bool:
        done = await self.committed(group)
        return done is not None and all(done.get(tp, 0) >= mark for tp, mark in marks.items() if mark > 0)

    async def caught_up(self, timeout: float) -> float | None:
        """The moment the archive holds everything the edge had accepted when this was called (None: not within
        `timeout`): the spool is empty, the worker has committed past the raw topic's end as it was then, and
        the sink has committed past every topic's end as it was once the worker got there."""
        deadline = time.monotonic() + timeout

        async def spool_empty() -> bool:
            return await self.stack.spool_records() == 0
        if not await self._until(spool_empty, deadline):
            return None
        raw: dict[TopicPartition, int] = {}

        async def raw_marked() -> bool:
            nonlocal raw
            raw = await self.high_water("raw") or {}
            return bool(raw)
        if not await self._until(raw_marked, deadline):
            return None
        if not await self._until(lambda: self._passed(f"{self.prefix}-worker", raw), deadline):
            return None
        outputs: dict[TopicPartition, int] = {}

        async def outputs_marked() -> bool:
            nonlocal outputs
            outputs = await self.high_water(*self.OUTPUTS) or {}
            return bool(outputs)
        if not await self._until(outputs_marked, deadline):
            return None
        if not await self._until(lambda: self._passed(f"{self.prefix}-sink", outputs), deadline):
            return None
        return time.monotonic()


# -- faults --------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """A stretch of the run: the steady start, one fault and its recovery, or the tail after the faults.
    A callback belongs to the phase in which it got its final answer."""

    name: str
    began: float
    fault_at: float = 0.0        # the fault's moment (for the steady phase: when the catch-up was measured from)
    back_at: float = 0.0         # the killed part ready again
    caught_up_at: float | None = None
    notes: list[str] = field(default_factory=list)


async def _kill_and_restart(stack: ChaosStack, phase: Phase, name: str) -> None:
    await stack.kill(name)
    phase.fault_at = time.monotonic()
    await asyncio.sleep(stack.config.down_s)
    phase.back_at = await stack.restart(name)
    phase.notes.append(f"{name} ready {phase.back_at - phase.fault_at:.1f}s after the kill")


async def kill_worker(stack: ChaosStack, phase: Phase) -> None:
    await _kill_and_restart(stack, phase, "worker")


async def kill_sink(stack: ChaosStack, phase: Phase) -> None:
    await _kill_and_restart(stack, phase, "sink")


async def kill_edge(stack: ChaosStack, phase: Phase) -> None:
    await _kill_and_restart(stack, phase, "edge")


async def kill_broker(stack: ChaosStack, phase: Phase) -> None:
    await stack.kill_broker()
    phase.fault_at = time.monotonic()
    await asyncio.sleep(stack.config.broker_down_s)
    phase.back_at = await stack.restart_broker()
    phase.notes.append(f"broker ready {phase.back_at - phase.fault_at:.1f}s after the kill")


async def fill_spool_disk(stack: ChaosStack, phase: Phase) -> None:
    """During a broker outage the spool takes every callback; then its disk fills (the edge's file-size limit is
    lowered to a little above the spool's size, so a write is cut short and later ones fail with EFBIG) and,
    after `disk_full_s`, is freed; then the broker comes back and the spool drains."""
    config = stack.config
    await stack.kill_broker()
    killed = time.monotonic()
    while time.monotonic() - killed < 10 and not (await stack.spool_records() or 0) > 0:
        await asyncio.sleep(0.1)  # the edge has noticed the outage and is spooling
    await asyncio.sleep(1.0)
    size = stack.spool_log.stat().st_size if stack.spool_log.exists() else 0
    stack.limit_edge_file_size(size + 32 * 1024)
    phase.fault_at = time.monotonic()
    phase.notes.append(f"spool file limited to {size + 32 * 1024:,} bytes ({size:,} spooled)")
    await asyncio.sleep(config.disk_full_s)
    stack.free_edge_disk()
    freed = time.monotonic()
    await asyncio.sleep(1.0)
    phase.back_at = await stack.restart_broker()
    phase.notes.append(f"disk freed {freed - phase.fault_at:.1f}s after it filled; broker killed "
                       f"{phase.fault_at - killed:.1f}s before, ready again {phase.back_at - phase.fault_at:.1f}s after")


FAULT_ACTIONS: dict[str, Callable[[ChaosStack, Phase], Awaitable[None]]] = {
    "worker": kill_worker, "sink": kill_sink, "edge": kill_edge, "broker": kill_broker, "disk": fill_spool_disk,
}


# -- the archive, read back --------------------------------------------------------------------------------------


@dataclass
class Archive:
    """What a user finds in the archive afterwards, read with `wxarchive sql`."""

    raw: Counter[str]                     # sha256 of each stored raw body -> copies
    dead_letters: Counter[tuple[str, str]]  # (sha256 of the body, stage) -> dead letters
    rows: Counter[tuple[str, str, str]]   # (view, account, identity) -> rows in that view

    def kept(self, sha: str) -> bool:
        return any(s == sha for s, _ in self.dead_letters)

    def stages(self, sha: str) -> set[str]:
        return {stage for s, stage in self.dead_letters if s == sha}

    @property
    def messages(self) -> int:
        return sum(1 for view, _, _ in self.rows if view == "v_messages")

    @property
    def events(self) -> int:
        return sum(1 for view, _, _ in self.rows if view == "v_account_events")


async def sql(env: dict[str, str], query: str) -> list[list[str]]:
    """A query through `wxarchive sql`, as a user runs it once no process holds the embedded ClickHouse."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "commands", "sql", "--format", "TabSeparated", query, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wxarchive sql failed ({proc.returncode}): {err.decode(errors='replace')}")
    return [line.split("\t") for line in out.decode().splitlines()]


async def read_archive(env: dict[str, str]) -> Archive:
    raw = await sql(env, "SELECT lower(hex(SHA256(body))), count() FROM wxarchive.raw_callbacks FINAL GROUP BY 1")
    dead = await sql(env, "SELECT lower(hex(SHA256(body))), stage, count() FROM wxarchive.dead_letters FINAL GROUP BY 1, 2")
    rows = await sql(env, "SELECT 'v_messages', account, identity, count() FROM wxarchive.v_messages "
                          "GROUP BY account, identity UNION ALL "
                          "SELECT 'v_account_events', account, identity, count() FROM wxarchive.v_account_events "
                          "GROUP BY account, identity")
    return Archive(raw=Counter({sha: int(n) for sha, n in raw}),
                   dead_letters=Counter({(sha, stage): int(n) for sha, stage, n in dead}),
                   rows=Counter({(view, account, identity): int(n) for view, account, identity, n in rows}))


# -- the report ---------------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """One phase's figures. Lost: answered 200 and missing from `raw_callbacks` or from the views. Duplicated:
    extra rows of one (account, identity) in a view. Kept: refused with a 4xx and found among the dead letters."""

    phase: str
    answered: int = 0
    accepted: int = 0
    refused: int = 0
    failed_attempts: int = 0
    gave_up: int = 0
    lost_raw: int = 0
    lost_views: int = 0
    duplicated: int = 0
    kept: int = 0
    not_kept: int = 0
    extra_raw: int = 0
    back_to_200_s: float | None = None  # None: no post failed in this phase
    caught_up_s: float | None = None    # None: the archive did not catch up within the bound
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.lost_raw + self.lost_views


@dataclass
class Check:
    """One thing a user would notice, under a key the tests select by ("raw", "views", "dead_letters", …)."""

    key: str
    what: str
    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}" + (f": {self.detail}" if self.detail else "")


@dataclass
class ChaosReport:
    config: ChaosConfig
    truth: Summary
    figures: list[Figures]
    checks: list[Check]
    seconds: float
    timeline: list[str]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def failed(self, key: str) -> list[Check]:
        """The failed checks under `key`; a key no check has is a mistake in the caller."""
        mine = [c for c in self.checks if c.key == key]
        assert mine, f"no check is called {key!r}"
        return [c for c in mine if not c.ok]

    def table(self) -> str:
        head = ("| phase | answered | 200 | 4xx | failed posts | gave up | lost | duplicated | kept (DLQ) | "
                "4xx not kept | extra raw copies | 200 again after | caught up after |")
        lines = [head, "|" + "---|" * (head.count("|") - 1)]
        for f in self.figures:
            back = "-" if f.back_to_200_s is None else f"{f.back_to_200_s:.1f} s"
            caught = "never" if f.caught_up_s is None else f"{f.caught_up_s:.1f} s"
            lost = f"{f.lost}" + (f" ({f.lost_raw} raw, {f.lost_views} views)" if f.lost else "")
            lines.append(f"| {f.phase} | {f.answered:,} | {f.accepted:,} | {f.refused} | {f.failed_attempts:,} | "
                         f"{f.gave_up} | {lost} | {f.duplicated} | {f.kept} | {f.not_kept} | {f.extra_raw} | "
                         f"{back} | {caught} |")
        return "\n".join(lines)

    def render(self) -> str:
        c = self.config
        lines = [f"chaos run: {c.count:,} callbacks at {c.rate:g}/s, seed {c.seed}, {c.rounds} round(s) of "
                 f"{', '.join(c.faults)}; {self.seconds:.0f} s", self.truth.to_text(), "", self.table(), ""]
        for f in self.figures:
            if f.notes:
                lines.append(f"{f.phase}: " + "; ".join(f.notes))
        lines.append("")
        lines += [str(check) for check in self.checks]
        return "\n".join(lines)

    def full(self) -> str:
        """The report and the run's timeline: what a failing test shows and `save` writes."""
        return self.render() + "\n\ntimeline:\n" + "\n".join(self.timeline)

    def save(self, directory: Path) -> Path:
        """`full()` as `report.txt` in the run's directory, next to the parts' logs."""
        path = directory / "report.txt"
        path.write_text(self.full() + "\n")
        return path


def _phase_of(phases: list[Phase], moment: float) -> int:
    index = 0
    for i, phase in enumerate(phases):
        if moment >= phase.began:
            index = i
    return index


def _identity(body: bytes) -> tuple[str, str] | None:
    """(account, identity) of a callback that carries a newMsgId: the identity the archive must show once.
    Events without one get a hash identity inside the product; those are checked by count only."""
    doc = orjson.loads(body)
    data = doc.get("data")
    new_msg_id = data.get("newMsgId") if isinstance(data, dict) else None
    if isinstance(new_msg_id, int) and not isinstance(new_msg_id, bool):
        return doc["wcId"], str(new_msg_id)
    return None


def assess(sender: Sender, phases: list[Phase], archive: Archive, truth: Summary,
           unexpected_exits: list[tuple[float, str, int]]) -> tuple[list[Figures], list[Check]]:
    """Each phase's figures and the run's checks, from what the sender was told and what the archive holds."""
    figures = [Figures(p.name, notes=list(p.notes)) for p in phases]
    ends = [p.began for p in phases[1:]] + [float("inf")]
    for phase, end, fig in zip(phases, ends, figures):
        attempts = sender.attempts_between(phase.began, end)
        failed = [a for a in attempts if a.failed]
        fig.failed_attempts = len(failed)
        if failed:
            kinds = Counter(f"{a.outcome} ({a.error})" if a.outcome == "reset" else a.outcome for a in failed)
            fig.notes.append("failed posts: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
            last_failure = max(a.ended for a in failed)
            back = [a.ended for a in attempts if a.outcome == "200" and a.ended >= last_failure]
            if back:
                fig.back_to_200_s = min(back) - (phase.fault_at or phase.began)
        if phase.caught_up_at is not None:
            fig.caught_up_s = phase.caught_up_at - (phase.fault_at or phase.began)
    for exit_at, name, code in unexpected_exits:
        figures[_phase_of(phases, exit_at)].notes.append(f"the {name} exited on its own (code {code}) and was restarted")

    by_sha: dict[str, list[Callback]] = {}
    first_seen: dict[tuple[str, str], int] = {}
    for callback in sender.callbacks:
        fig = figures[_phase_of(phases, callback.answered_at)]
        fig.answered += 1
        if callback.outcome == "200":
            fig.accepted += 1
            by_sha.setdefault(callback.sha256, []).append(callback)
            key = _identity(callback.body)
            if key is not None:
                index = _phase_of(phases, callback.answered_at)
                first_seen[key] = min(first_seen.get(key, index), index)
        elif callback.outcome == "gave up":
            fig.gave_up += 1
        else:
            fig.refused += 1
            if archive.kept(callback.sha256):
                fig.kept += 1
            else:
                fig.not_kept += 1
    for sha, accepted in by_sha.items():
        accepted.sort(key=lambda c: c.answered_at)
        stored = archive.raw[sha]
        for callback in accepted[stored:]:  # the latest answers are the ones counted missing
            figures[_phase_of(phases, callback.answered_at)].lost_raw += 1
        if stored > len(accepted):
            figures[_phase_of(phases, accepted[-1].answered_at)].extra_raw += stored - len(accepted)
    present = {(account, identity) for _, account, identity in archive.rows}
    for key, index in first_seen.items():
        if key not in present:
            figures[index].lost_views += 1
    unattributed_duplicates = 0
    for (_view, account, identity), n in archive.rows.items():
        if n > 1:
            first = first_seen.get((account, identity))
            if first is None:
                unattributed_duplicates += n - 1
            else:
                figures[first].duplicated += n - 1
    in_both = {(a, i) for v, a, i in archive.rows if v == "v_messages"} & {(a, i) for v, a, i in archive.rows if v == "v_account_events"}
    for key in in_both:
        if key in first_seen:
            figures[first_seen[key]].duplicated += 1
        else:
            unattributed_duplicates += 1

    def total(name: str) -> int:
        return sum(getattr(f, name) for f in figures)
    refused = [c for c in sender.callbacks if c.outcome not in ("200", "gave up")]
    unlabelled = sum(1 for c in refused if archive.kept(c.sha256) and "edge" not in archive.stages(c.sha256))
    faults = [f for f in figures if f.phase != "after"]
    disk = [f for f in figures if f.phase.startswith("disk")]
    checks = [
        Check("answered", "every callback got a final answer (the sender gave up on none after its re-posts)",
              total("gave_up") == 0, f"{total('gave_up')} given up"),
        Check("raw", "every body answered 200 is in raw_callbacks", total("lost_raw") == 0,
              f"{total('lost_raw')} missing"),
        Check("views", "every (account, newMsgId) answered 200 is in v_messages or v_account_events",
              total("lost_views") == 0, f"{total('lost_views')} missing"),
        Check("views", "v_messages holds exactly the simulator's unique messages",
              archive.messages == truth.expected_unique_messages,
              f"{archive.messages:,} rows, simulator {truth.expected_unique_messages:,}"),
        Check("views", "v_account_events holds exactly the simulator's unique events",
              archive.events == truth.expected_unique_events,
              f"{archive.events:,} rows, simulator {truth.expected_unique_events:,}"),
        Check("dead_letters", "every body refused with a 4xx is a dead letter", total("not_kept") == 0,
              f"{total('kept')} kept, {total('not_kept')} not"),
        Check("dead_letters", "exactly the malformed bodies were refused", total("refused") == truth.malformed,
              f"{total('refused')} refused, simulator {truth.malformed} malformed"),
        Check("dead_letters", "the edge's dead letters say stage 'edge' (docs/clickhouse.md)", unlabelled == 0,
              f"{unlabelled} of {len(refused)} without it"),
        Check("duplicates", "no (account, identity) appears twice in the views",
              total("duplicated") + unattributed_duplicates == 0,
              f"{total('duplicated')} extra rows" + (f", {unattributed_duplicates} of hash identities"
                                                      if unattributed_duplicates else "")),
        Check("recovery", "the archive caught up after every fault", all(f.caught_up_s is not None for f in figures),
              ", ".join(f.phase for f in figures if f.caught_up_s is None)),
        Check("recovery", "no part exited unless killed", not unexpected_exits,
              ", ".join(f"{name} (code {code})" for _, name, code in unexpected_exits)),
        Check("recovery", "every fault met load (callbacks were answered during it)",
              all(f.answered > 0 for f in faults), ", ".join(f.phase for f in faults if f.answered == 0)),
        Check("recovery", "the full disk was felt (the edge answered 5xx while it was full)",
              all(f.failed_attempts > 0 for f in disk), ", ".join(f.phase for f in disk if not f.failed_attempts)),
    ]
    return figures, checks


# -- one run ------------------------------------------------------------------------------------------------------


class ChaosRun:
    """One run: the stack in `workdir`, the load, the faults in turn, the archive read back, the report.
    `say` hears the timeline as it happens (the soak prints it; the report keeps it)."""

    def __init__(self, config: ChaosConfig, workdir: Path, say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.say = say
        self.began = time.monotonic()
        self.timeline: list[str] = []
        generator = TrafficGenerator(TrafficConfig(count=config.count, seed=config.seed, accounts=config.accounts))
        self.bodies = generator.bodies()
        self.truth = generator.summary
        self.directory = generator.directory  # the fake E云 must know the simulator's people, for getContact
        self.stack = ChaosStack(workdir, config)
        self.watch = ArchiveWatch(self.stack)

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.began:6.1f}s  {text}"
        self.timeline.append(line)
        self.say(line)

    async def run(self) -> ChaosReport:
        load: asyncio.Task[None] | None = None
        try:
            await self.stack.start(self.directory)
            self.note(f"stack ready: broker {self.stack.broker.spec.bootstrap}, edge {self.stack.edge_url}")
            sender = Sender(self.bodies, self.stack.callback_url, self.config)
            load = asyncio.create_task(sender.run())
            phases = await self._faults(sender)
            after = phases[-1]
            self.note(f"faults done; posting the last {sender.remaining:,} callbacks without pacing")
            sender.hurry()
            await load
            after.caught_up_at = await self.watch.caught_up(self.config.catch_up_timeout_s)
            self.note("all posted; " + _caught_up(after))
            await self.watch.close()
            codes = await self.stack.stop_parts()
            self.note("parts stopped: " + ", ".join(f"{k} exit {v}" for k, v in codes.items()))
            archive = await read_archive(self.stack.env())
            self.note(f"archive read: {sum(archive.raw.values()):,} raw callbacks, {archive.messages:,} messages, "
                      f"{archive.events:,} events, {sum(archive.dead_letters.values())} dead letters")
            figures, checks = assess(sender, phases, archive, self.truth, self.stack.unexpected_exits)
        finally:
            if load is not None:
                load.cancel()
                await asyncio.gather(load, return_exceptions=True)
            await self.watch.close()
            await self.stack.close()
        return ChaosReport(self.config, self.truth, figures, checks, time.monotonic() - self.began, self.timeline)

    async def _faults(self, sender: Sender) -> list[Phase]:
        """The steady start, each fault in turn (the next one only once the archive caught up with the last, or
        gave up trying), and the phase "after" opened for the tail."""
        config = self.config
        steady = Phase("steady", began=time.monotonic())
        phases = [steady]
        await asyncio.sleep(config.settle_s)
        steady.fault_at = time.monotonic()
        steady.caught_up_at = await self.watch.caught_up(config.catch_up_timeout_s)
        self.note("steady load; " + _caught_up(steady))
        for round_no in range(1, config.rounds + 1):
            for name in config.faults:
                phase = Phase(name if config.rounds == 1 else f"{name} #{round_no}", began=time.monotonic())
                phases.append(phase)
                self.note(f"fault: {phase.name} ({sender.remaining:,} callbacks still to post)")
                await FAULT_ACTIONS[name](self.stack, phase)
                phase.caught_up_at = await self.watch.caught_up(config.catch_up_timeout_s)
                self.note(f"{phase.name}: " + "; ".join(phase.notes + [_caught_up(phase)]))
                await asyncio.sleep(config.settle_s)
        after = Phase("after", began=time.monotonic())
        after.fault_at = after.began
        phases.append(after)
        return phases


def _caught_up(phase: Phase) -> str:
    return "archive caught up" if phase.caught_up_at is not None else "archive NOT caught up"


async def run_chaos(config: ChaosConfig, workdir: Path, say: Callable[[str], None] = lambda _: None) -> ChaosReport:
    """A whole chaos run in `workdir` (fresh: the broker's data, the archive, the logs); see ChaosRun."""
    return await ChaosRun(config, workdir, say).run()
