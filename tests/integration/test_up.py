"""`wxarchive up`, the README's first command, as a user runs it."""

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from wxarchive.net import free_ports


def up_env(tmp_path: Path, bootstrap: str | None = None) -> dict[str, str]:
    """A private data dir, topic prefix and ports, so a test's stack meets nothing of another's."""
    edge, worker, sink, port, controller, api, door = free_ports(7)
    return {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path / "var"), "WXARCHIVE_TOPIC_PREFIX": f"up{uuid.uuid4().hex[:8]}",
            "WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap or f"127.0.0.1:{port}", "WXARCHIVE_KAFKA_CONTROLLER_PORT": str(controller),
            "WXARCHIVE_EDGE_PORT": str(edge), "WXARCHIVE_WORKER_PORT": str(worker), "WXARCHIVE_SINK_PORT": str(sink),
            "WXARCHIVE_API_PORT": str(api), "WXARCHIVE_DOOR_PORT": str(door)}


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_all_stopped(env: dict[str, str]) -> None:
    status = subprocess.run([sys.executable, "-m", "commands", "kafka", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3, "up must stop the broker it started"
    for name in ("EDGE", "WORKER", "SINK", "API"):
        assert not listening(int(env[f"WXARCHIVE_{name}_PORT"])), f"the {name.lower()} is still running"


def test_up_check_starts_reports_and_stops_everything(tmp_path: Path) -> None:
    env = up_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "commands", "up", "--check"], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    bootstrap = env["WXARCHIVE_KAFKA_BOOTSTRAP"]
    assert f"kafka   ready  {bootstrap}  (local Apache Kafka" in done.stdout
    assert "eyun    ready  http://127.0.0.1:" in done.stdout and "(fake E云 API" in done.stdout
    chdb_dir = tmp_path / "var" / "clickhouse"
    assert f"sink    ready  http://127.0.0.1:{env['WXARCHIVE_SINK_PORT']}  (in this process, into chdb {chdb_dir})" in done.stdout
    assert f"edge    ready  http://127.0.0.1:{env['WXARCHIVE_EDGE_PORT']}/callback  (no secret" in done.stdout
    assert f"worker  ready  http://127.0.0.1:{env['WXARCHIVE_WORKER_PORT']}/metrics" in done.stdout
    token_file = tmp_path / "var" / "admin-token"
    token = token_file.read_text().strip()
    assert f"api     ready  http://127.0.0.1:{env['WXARCHIVE_API_PORT']}/docs  (admin token {token}, kept in " \
           f"{token_file})" in done.stdout
    assert token.startswith("wxa_") and token_file.stat().st_mode & 0o777 == 0o600
    password_file = tmp_path / "var" / "door-password"
    password = password_file.read_text().strip()
    assert f"door    ready  http://reader:{password}@127.0.0.1:{env['WXARCHIVE_DOOR_PORT']}  (the archive, read-only" \
        in done.stdout
    assert len(password) >= 20 and password_file.stat().st_mode & 0o777 == 0o600
    assert "Error" not in done.stderr, done.stderr  # quiet: no transient noise from the libraries
    assert_all_stopped(env)


def test_up_uses_a_broker_that_is_already_running(bootstrap: str, tmp_path: Path) -> None:
    env = up_env(tmp_path, bootstrap)
    done = subprocess.run([sys.executable, "-m", "commands", "up", "--check"], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"kafka   ready  {bootstrap}  (existing broker" in done.stdout


def test_up_demo_archives_what_the_simulator_sent_and_can_run_again(bootstrap: str, tmp_path: Path) -> None:
    env = up_env(tmp_path, bootstrap)

    def demo(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "commands", "up", "--demo", "--count", "600", *extra],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        for label in ("messages archived", "events archived", "duplicates dropped", "malformed rejected"):
            line = next(ln for ln in done.stdout.splitlines() if ln.strip().startswith(label))
            assert line.rstrip().endswith("ok"), line
        assert "sample conversation" in done.stdout and "demo passed: the archive matches the simulator" in done.stdout
        return done.stdout

    demo("--seed", "7")
    second = demo()  # the same data directory and archive again: a new seed, counted on its own
    assert "(seed 7)" not in second
    again = subprocess.run([sys.executable, "-m", "commands", "up", "--demo", "--count", "600", "--seed", "7"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "a duplicate of an earlier run" in again.stdout, again.stdout  # and says why
    assert_all_stopped(env)


def test_a_busy_port_is_named_and_nothing_is_left_running(tmp_path: Path) -> None:
    env = up_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["WXARCHIVE_EDGE_PORT"])))
        taken.listen()
        done = subprocess.run([sys.executable, "-m", "commands", "up", "--check"], env=env, capture_output=True,
                              text=True, timeout=240)
    assert done.returncode != 0
    assert "WXARCHIVE_EDGE_PORT" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert_all_stopped({**env, "WXARCHIVE_EDGE_PORT": str(free_ports(1)[0])})


def test_ctrl_c_stops_what_up_started(tmp_path: Path) -> None:
    env = up_env(tmp_path)
    up = subprocess.Popen([sys.executable, "-m", "commands", "up"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        assert any("worker  ready" in ln for ln in lines), lines
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
    finally:
        if up.poll() is None:
            up.kill()
    assert_all_stopped(env)
