"""The local broker launcher, against real broker processes."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.kafka_broker import LocalKafka
from tests.conftest import broker_spec
from wxarchive.config import Settings
from wxarchive.errors import BrokerError, PrerequisiteError
from wxarchive.kafka_clients import durable_producer, probe_sync, read_to_end
from wxarchive.topics import RAW, ensure_topics


def _processes_using(config_file: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(config_file).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_session_broker_serves_requests(kafka_broker: LocalKafka) -> None:
    state = kafka_broker.status()
    assert state.running and state.ready
    assert state.rss_mb and state.rss_mb > 50


def test_start_again_reports_the_running_broker(kafka_broker: LocalKafka) -> None:
    again = LocalKafka(kafka_broker.spec).start()
    assert again.already_running
    assert again.pid == kafka_broker.status().pid


def test_stop_leaves_no_process_and_data_persists(tmp_path: Path) -> None:
    broker = LocalKafka(broker_spec(tmp_path / "kafka"))
    first = broker.start()

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.spec.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("kept-across-restart", 1, 1)])
        await admin.close()

    asyncio.run(create())
    stopped = broker.stop()
    assert stopped.pid == first.pid
    assert _processes_using(broker.config_file) == []
    assert _port_is_free(broker.spec.port) and _port_is_free(broker.spec.controller_port)
    assert not broker.pid_file.exists()
    assert broker.stop().detail == "not running"

    # the same data directory, restarted through the CLI in another process: the topic is still there
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path), "WXARCHIVE_KAFKA_BOOTSTRAP": broker.spec.bootstrap,
           "WXARCHIVE_KAFKA_CONTROLLER_PORT": str(broker.spec.controller_port)}
    started = subprocess.run([sys.executable, "-m", "commands", "kafka", "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        assert "kept-across-restart" in probe_sync(broker.spec.bootstrap)
    finally:
        done = subprocess.run([sys.executable, "-m", "commands", "kafka", "stop"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "stopped" in done.stdout
    assert _processes_using(broker.config_file) == []


def test_a_broker_killed_with_sigkill_comes_back_with_every_acknowledged_record(tmp_path: Path) -> None:
    """kill -9 (a crash, the OOM killer): `wxarchive kafka start` brings the same data directory back, and every
    record the broker acknowledged to an acks=all producer before it died is still there."""
    broker = LocalKafka(broker_spec(tmp_path / "kafka"))
    first = broker.start()
    settings = Settings.load(env={"WXARCHIVE_KAFKA_BOOTSTRAP": broker.spec.bootstrap, "WXARCHIVE_DATA_DIR": str(tmp_path)})
    sent = [f"callback {i}".encode() for i in range(500)]

    async def produce() -> None:
        await ensure_topics(settings, RAW)
        producer = durable_producer(settings.kafka_bootstrap)
        await producer.start()
        try:
            acks = [await producer.send(RAW.name(settings), body, key=f"wc{i % 7}".encode()) for i, body in enumerate(sent)]
            await asyncio.gather(*acks)  # every one acknowledged by the broker
        finally:
            await producer.stop()

    asyncio.run(produce())
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    _, status = os.waitpid(first.pid, 0)  # this test's process started the JVM: reap it
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert broker.pid_file.exists()  # left behind, as after a crash

    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path), "WXARCHIVE_KAFKA_BOOTSTRAP": broker.spec.bootstrap,
           "WXARCHIVE_KAFKA_CONTROLLER_PORT": str(broker.spec.controller_port)}
    started = subprocess.run([sys.executable, "-m", "commands", "kafka", "start"], env=env, capture_output=True,
                             text=True, timeout=150)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith(f"Kafka {broker.spec.version} ready on {broker.spec.bootstrap}")
        kept = asyncio.run(read_to_end(settings.kafka_bootstrap, RAW.name(settings)))
        assert sorted(record.value for record in kept) == sorted(sent)
    finally:
        subprocess.run([sys.executable, "-m", "commands", "kafka", "stop"], env=env, capture_output=True, timeout=60)
    assert _processes_using(broker.config_file) == []


def test_stop_kills_a_broker_that_ignores_sigterm(tmp_path: Path) -> None:
    broker = LocalKafka(broker_spec(tmp_path / "kafka"))
    state = broker.start()
    assert state.pid is not None
    os.kill(state.pid, signal.SIGSTOP)  # a stopped JVM cannot act on SIGTERM
    try:
        result = broker.stop(timeout=1.0)
    finally:
        if _processes_using(broker.config_file):
            os.kill(state.pid, signal.SIGKILL)
    assert result.detail.startswith("killed")
    assert _processes_using(broker.config_file) == []


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = LocalKafka(broker_spec(tmp_path / "kafka", port=port))
        with pytest.raises(PrerequisiteError, match=f"127.0.0.1:{port} is already in use"):
            broker.start()
    assert not broker.pid_file.exists()


def test_early_exit_reports_the_log_tail(tmp_path: Path) -> None:
    broker = LocalKafka(replace(broker_spec(tmp_path / "kafka"), heap="lots"))
    with pytest.raises(BrokerError, match=r"exited during start-up(.|\n)*Invalid maximum heap size"):
        broker.start()
    assert not broker.pid_file.exists()


def test_unknown_version_fails_with_maven_reason(tmp_path: Path) -> None:
    broker = LocalKafka(replace(broker_spec(tmp_path / "kafka"), version="4.0.99", cache_dir=tmp_path / "cache"))
    with pytest.raises(BrokerError, match=r"Maven could not resolve Apache Kafka 4\.0\.99: .*kafka_2\.13"):
        broker.fetch()


def test_cached_jars_need_no_maven(kafka_broker: LocalKafka, tmp_path: Path) -> None:
    """After the first fetch the broker starts offline: `fetch` does not even look for Maven."""
    env = {"PATH": str(tmp_path), "WXARCHIVE_KAFKA_CACHE_DIR": str(kafka_broker.spec.cache_dir),
           "WXARCHIVE_KAFKA_VERSION": kafka_broker.spec.version}
    done = subprocess.run([sys.executable, "-m", "commands", "kafka", "fetch"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "(already cached)" in done.stdout
