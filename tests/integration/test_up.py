"""`wxarchive up`, the README's first command, as a user runs it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from wxarchive.net import free_ports


def test_up_check_starts_reports_and_stops_everything(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path / "var"), "WXARCHIVE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
           "WXARCHIVE_KAFKA_CONTROLLER_PORT": str(controller_port)}
    done = subprocess.run([sys.executable, "-m", "wxarchive.cli", "up", "--check"], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"kafka       ready  127.0.0.1:{port}  (local Apache Kafka" in done.stdout
    assert f"clickhouse  ready  chdb {tmp_path / 'var' / 'clickhouse'}  (embedded chdb" in done.stdout
    status = subprocess.run([sys.executable, "-m", "wxarchive.cli", "kafka", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3, "up --check must stop the broker it started"


def test_up_uses_a_broker_that_is_already_running(bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path / "var"), "WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap}
    done = subprocess.run([sys.executable, "-m", "wxarchive.cli", "up", "--check"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"kafka       ready  {bootstrap}  (existing broker" in done.stdout



def test_ctrl_c_stops_what_up_started(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path / "var"), "WXARCHIVE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
           "WXARCHIVE_KAFKA_CONTROLLER_PORT": str(controller_port)}
    up = subprocess.Popen([sys.executable, "-m", "wxarchive.cli", "up"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        assert any("kafka       ready" in ln for ln in lines), lines
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
    status = subprocess.run([sys.executable, "-m", "wxarchive.cli", "kafka", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3, "Ctrl-C must stop the broker that up started"
