"""`wxarchive up`: bring the archive's parts up, report their health, keep them up until Ctrl-C.

Kafka: a broker already answering at the bootstrap address is used as it is; a loopback address with no
broker gets the local one, started here and stopped again on exit; any other address must answer.
ClickHouse: opened (and so owned, in embedded mode) by this process.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from deploy.kafka_broker import BrokerSpec, LocalKafka
from sinks.clickhouse_client import open_client, parse_dsn
from wxarchive.config import Settings, env_name
from wxarchive.errors import BrokerError
from wxarchive.kafka_clients import probe_sync



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


@dataclass
class Stack:
    settings: Settings
    components: list[Component] = field(default_factory=list)
    _broker: LocalKafka | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        try:
            self._start_kafka()
            self._open_clickhouse()
        except BaseException:
            self.stop()
            raise

    def _start_kafka(self) -> None:
        bootstrap = self.settings.kafka_bootstrap
        try:
            topics = probe_sync(bootstrap, timeout=3.0)
            self.components.append(Component("kafka", True, bootstrap, f"existing broker, {len(topics)} topics"))
            return
        except BrokerError:
            if not served_locally(bootstrap):
                raise BrokerError(
                    f"Kafka at {bootstrap} is not answering; start it, or unset {env_name('kafka_bootstrap')} "
                    "to use the local broker"
                ) from None
        broker = LocalKafka(BrokerSpec.from_settings(self.settings))
        state = broker.start(progress=True)
        self._broker = broker
        rss = f", RSS {state.rss_mb:.0f} MB" if state.rss_mb else ""
        self.components.append(
            Component("kafka", state.ready, bootstrap,
                      f"local Apache Kafka {state.version}, pid {state.pid}, ready in {state.seconds:.1f}s{rss}")
        )

    def _open_clickhouse(self) -> None:
        target = parse_dsn(self.settings.clickhouse_dsn)
        client = open_client(self.settings.clickhouse_dsn)
        self._closers.append(client.close)
        version = client.server_version
        kind = "embedded chdb, owned by this process" if target.embedded else "server"
        self.components.append(Component("clickhouse", True, target.display, f"{kind}, ClickHouse {version}"))

    def report(self) -> str:
        width = max(len(c.name) for c in self.components)
        lines = [
            f"  {c.name:<{width}}  {'ready' if c.healthy else 'DOWN '}  {c.where}  ({c.detail})"
            for c in self.components
        ]
        return "\n".join(lines)

    @property
    def healthy(self) -> bool:
        return bool(self.components) and all(c.healthy for c in self.components)

    def wait_for_signal(self) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()

    def stop(self) -> None:
        """Close in reverse order; the broker is stopped only if this stack started it."""
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
