"""A local single-node Apache Kafka broker (KRaft, broker+controller) run from Maven Central jars.

There is no Docker here and the Kafka download site is out of reach, but Maven Central is not: `fetch`
resolves the broker's classpath with Maven into a cache (once; later runs need no network), `start`
formats storage on first use and launches `kafka.Kafka` detached, and reports ready only after a real
client request succeeded, since the port opens before requests are served. `stop` sends SIGTERM for a
controlled shutdown, then SIGKILL after a bound. The pid file and `/proc/PID/cmdline` together identify
our broker, so a recycled pid is never signalled.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
import zipfile
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from wxarchive.config import Settings, env_name
from wxarchive.errors import BrokerError, PrerequisiteError
from wxarchive.kafka_clients import probe_sync
from wxarchive.net import require_free_port

__all__ = ["BrokerSpec", "HEARTBEAT_INTERVAL_MS", "LocalKafka", "SESSION_TIMEOUT_MS", "new_cluster_id"]

STARTED_LINE = "Kafka Server started"
# The broker's session with its controller. After a kill -9 the restarted broker is refused registration
# (DUPLICATE_BROKER_REGISTRATION) until the controller, restarted in the same JVM, has expired the dead
# incarnation's session, counted from its activation: with Kafka's defaults (9000 ms, heartbeat 2000 ms) a
# restart after a crash took 13 s against 3-4 s after a clean stop (docs/local-stack.md). Here broker and
# controller are one JVM talking over loopback, so a session can only lapse when the whole JVM stalls (long
# GC, SIGSTOP, a starved machine); the controller then fences the broker until its next heartbeat (measured:
# unfenced again about 0.1 s after a 6 s SIGSTOP), clients retry, and no log is truncated or deleted. Kafka
# requires the interval to be at most half the timeout; 500 ms in 3000 ms leaves six heartbeats of slack.
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 500
MIN_JAVA = 17
_STAMP = ".complete"


@dataclass(frozen=True)
class BrokerSpec:
    """Where and how one local broker runs."""

    version: str
    cache_dir: Path
    run_dir: Path
    host: str
    port: int
    controller_port: int
    heap: str
    # server.properties lines written after the launcher's own (a later key wins): for measuring a setting
    # against the launcher's choice, as benchmarks/broker_restart.py does with Kafka's defaults
    overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, host: str | None = None, port: int | None = None) -> BrokerSpec:
        first = settings.kafka_bootstrap.split(",")[0].strip()
        default_host, _, default_port = first.rpartition(":")
        try:
            broker_port = port or int(default_port)
        except ValueError:
            raise BrokerError(f"{env_name('kafka_bootstrap')} must be host:port, got {first!r}") from None
        return cls(
            version=settings.kafka_version,
            cache_dir=settings.kafka_cache_dir,
            run_dir=(settings.data_dir / "kafka").resolve(),
            host=host or default_host or "127.0.0.1",
            port=broker_port,
            controller_port=settings.kafka_controller_port or broker_port + 1,
            heap=settings.kafka_heap,
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass(frozen=True)
class FetchResult:
    libs_dir: Path
    fetched: bool
    seconds: float
    jars: int
    megabytes: float


@dataclass(frozen=True)
class BrokerState:
    pid: int | None
    running: bool
    ready: bool
    bootstrap: str
    version: str
    rss_mb: float | None
    uptime_s: float | None
    seconds: float = 0.0
    already_running: bool = False
    detail: str = ""


class LocalKafka:
    """One local broker: its jars, its configuration and data under `run_dir`, its process."""

    def __init__(self, spec: BrokerSpec) -> None:
        self.spec = spec
        self.version_dir = spec.cache_dir / spec.version
        self.libs_dir = self.version_dir / "libs"
        self.data_dir = spec.run_dir / "data"
        self.logs_dir = spec.run_dir / "logs"
        self.log_file = self.logs_dir / "kafka.out"
        self.pid_file = spec.run_dir / "kafka.pid"
        self.config_file = spec.run_dir / "server.properties"
        self._child: subprocess.Popen[bytes] | None = None

    # -- fetch -------------------------------------------------------------------------------------

    def fetch(self, progress: bool = False) -> FetchResult:
        """Resolve the broker's jars with Maven into the cache, unless a complete copy is there."""
        started = time.monotonic()
        if self._jars_complete():
            return self._fetch_result(fetched=False, started=started)
        mvn = _require_tool("mvn", "Maven is needed once to fetch the Kafka jars from Maven Central (apt-get install maven)")
        _require_java()
        if progress:
            print(f"Fetching Apache Kafka {self.spec.version} from Maven Central into {self.libs_dir} (once, about 45 MB)…", flush=True)
        self.version_dir.mkdir(parents=True, exist_ok=True)
        pom = self.version_dir / "pom.xml"
        pom_name = "pom.xml" if self.spec.major >= 4 else "pom-3.xml"
        pom.write_bytes(resources.files("deploy").joinpath("kafka", pom_name).read_bytes())
        staging = self.version_dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}", f"-Dkafka.version={self.spec.version}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.version_dir)
        if done.returncode != 0:
            reason = _maven_reason(done.stdout + done.stderr)
            raise BrokerError(
                f"Maven could not resolve Apache Kafka {self.spec.version}: {reason[:600]} "
                f"(check the network to Maven Central, or set {env_name('kafka_version')} to a complete release such as 4.3.1)"
            )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        (self.version_dir / _STAMP).write_text("\n".join(sorted(p.name for p in self.libs_dir.glob("*.jar"))) + "\n")
        if not self._jars_complete():
            raise BrokerError(f"the jars fetched into {self.libs_dir} do not contain kafka.Kafka; remove the folder and retry")
        return self._fetch_result(fetched=True, started=started)

    def _jars_complete(self) -> bool:
        stamp = self.version_dir / _STAMP
        if not stamp.is_file():
            return False
        names = stamp.read_text().split()
        return bool(names) and all((self.libs_dir / n).is_file() for n in names)

    def _fetch_result(self, fetched: bool, started: float) -> FetchResult:
        jars = list(self.libs_dir.glob("*.jar"))
        return FetchResult(
            libs_dir=self.libs_dir,
            fetched=fetched,
            seconds=time.monotonic() - started,
            jars=len(jars),
            megabytes=sum(j.stat().st_size for j in jars) / 1e6,
        )

    # -- start -------------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0, progress: bool = False) -> BrokerState:
        """Start the broker detached and wait until it serves a request; report one already running."""
        started = time.monotonic()
        current = self._running_pid()
        if current is not None:
            state = self.status(probe_timeout=timeout)
            return _with(state, already_running=True, seconds=time.monotonic() - started)
        java = _require_java()
        for port in (self.spec.port, self.spec.controller_port):
            require_free_port(self.spec.host, port, f"choose other ports with --port or {env_name('kafka_bootstrap')}")
        self.fetch(progress=progress)
        self._write_config()
        self._format_storage(java)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".out.prev"))
        with open(self.log_file, "wb") as log:
            self._child = subprocess.Popen(
                [java, *self._jvm_options(), "-cp", f"{self.libs_dir}/*", "kafka.Kafka", str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.spec.run_dir,
            )
        self.pid_file.write_text(f"{self._child.pid}\n")
        self._wait_ready(self._child, started + timeout)
        return _with(self.status(), seconds=time.monotonic() - started)

    def _jvm_options(self) -> list[str]:
        options = [
            f"-Xmx{self.spec.heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.logs_dir}",
        ]
        if self.spec.major >= 4:
            options.append(f"-Dlog4j2.configurationFile={self.spec.run_dir / 'log4j2.properties'}")
        else:
            options.append(f"-Dlog4j.configuration=file:{self.spec.run_dir / 'log4j.properties'}")
        return options

    def _write_config(self) -> None:
        self.spec.run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("log4j2.properties", "log4j.properties"):
            (self.spec.run_dir / name).write_bytes(resources.files("deploy").joinpath("kafka", name).read_bytes())
        host, port, cport = self.spec.host, self.spec.port, self.spec.controller_port
        # A static voter list (not a dynamic quorum) keeps the data directory usable when ports change.
        self.config_file.write_text(
            f"""# written by wxarchive on every start; edit the launcher, not this file
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{cport}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}
advertised.listeners=PLAINTEXT://{host}:{port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={self.data_dir}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=-1
# short sessions: a restart after kill -9 waits for the dead incarnation's session (deploy/kafka_broker.py)
broker.session.timeout.ms={SESSION_TIMEOUT_MS}
broker.heartbeat.interval.ms={HEARTBEAT_INTERVAL_MS}
"""
            + "".join(f"{key}={value}\n" for key, value in self.spec.overrides)
        )

    def _format_storage(self, java: str) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = new_cluster_id()
        logging_option = self._jvm_options()[-1]
        done = subprocess.run(
            [java, "-Xmx256m", logging_option, "-cp", f"{self.libs_dir}/*", _storage_tool(self.libs_dir),
             "format", "--ignore-formatted", "-t", cluster_id, "-c", str(self.config_file)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise BrokerError(f"formatting Kafka storage in {self.data_dir} failed: {_last_lines(done.stdout + done.stderr, 5)}")

    def _wait_ready(self, child: subprocess.Popen[bytes], deadline: float) -> None:
        announced = False
        while time.monotonic() < deadline:
            code = child.poll()
            if code is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the Kafka broker exited during start-up (exit code {code}); last lines of {self.log_file}:\n"
                    + _last_lines(self.log_file.read_text(errors="replace"), 15)
                )
            announced = announced or STARTED_LINE in self.log_file.read_text(errors="replace")
            if announced:
                try:
                    probe_sync(self.spec.bootstrap, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                    return
                except BrokerError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise BrokerError(
            f"the Kafka broker did not answer requests on {self.spec.bootstrap} in time; it was stopped. "
            f"Last lines of {self.log_file}:\n" + _last_lines(self.log_file.read_text(errors="replace"), 15)
        )

    # -- stop and status -----------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> BrokerState:
        """SIGTERM for a controlled shutdown, SIGKILL if it is still alive after `timeout` seconds."""
        started = time.monotonic()
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return self._state(None, detail="not running")
        os.kill(pid, signal.SIGTERM)
        detail = "stopped"
        if not self._wait_exit(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            detail = f"killed (no exit {timeout:g}s after SIGTERM)"
            if not self._wait_exit(pid, 10.0):
                raise BrokerError(f"Kafka broker pid {pid} survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return _with(self._state(None, detail=detail), pid=pid, seconds=time.monotonic() - started)

    def status(self, probe_timeout: float = 3.0) -> BrokerState:
        pid = self._running_pid()
        if pid is None:
            return self._state(None, detail="not running")
        try:
            probe_sync(self.spec.bootstrap, timeout=probe_timeout)
            return self._state(pid, ready=True, detail="ready")
        except BrokerError as exc:
            return self._state(pid, detail=f"running but not answering: {exc}")

    def _state(self, pid: int | None, ready: bool = False, detail: str = "") -> BrokerState:
        return BrokerState(
            pid=pid, running=pid is not None, ready=ready, bootstrap=self.spec.bootstrap,
            version=self.spec.version, rss_mb=_rss_mb(pid) if pid else None,
            uptime_s=_uptime_s(pid) if pid else None, detail=detail,
        )

    def _running_pid(self) -> int | None:
        """The pid in our pid file, if that process is alive and is this broker (not a recycled pid)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._child is not None and self._child.pid == pid and self._child.poll() is not None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if _is_zombie(pid) or b"kafka.Kafka" not in cmdline or str(self.config_file).encode() not in cmdline:
            return None
        return pid

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child is not None and self._child.pid == pid:
                if self._child.poll() is not None:
                    return True
            elif not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return True
            time.sleep(0.1)
        return False


def _with(state: BrokerState, **changes: Any) -> BrokerState:
    return replace(state, **changes)


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrerequisiteError(f"`{name}` was not found on PATH. {why}.")
    return path


def _require_java() -> str:
    java = _require_tool("java", f"Java {MIN_JAVA}+ runs the local Kafka broker (apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise PrerequisiteError(f"Java {MIN_JAVA}+ is needed for the Kafka broker; {java} is {out.splitlines()[0] if out else 'unknown'}")
    return java


def new_cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage random-uuid` makes it: 22 base64url characters, re-drawn when it
    would start with '-', which the storage tool's argument parser would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _storage_tool(libs: Path) -> str:
    """StorageTool's class: Scala `kafka.tools.StorageTool` through 4.3, checked in case it moves."""
    for jar in libs.glob("kafka_2.13-*.jar"):
        with zipfile.ZipFile(jar) as zf:
            if "kafka/tools/StorageTool.class" in zf.namelist():
                return "kafka.tools.StorageTool"
    return "org.apache.kafka.tools.StorageTool"


def _maven_reason(output: str) -> str:
    """The line of Maven's output that names the cause ("Could not find artifact …"), without colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in output.splitlines()]
    errors = [ln.removeprefix("[ERROR]").strip() for ln in lines if ln.startswith("[ERROR]")]
    causes = [e for e in errors if "Could not" in e or "Failed to execute" in e]
    return (causes or [e for e in errors if e] or [output.strip()[-400:] or "no output"])[0]


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _uptime_s(pid: int) -> float | None:
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
        return boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
