"""What a user sees when the machine lacks Java or Maven: one line that says what to install."""

import subprocess
import sys
from pathlib import Path


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir(exist_ok=True)
    env = {"PATH": str(empty_bin), "HOME": str(tmp_path), "WXARCHIVE_DATA_DIR": str(tmp_path / "var"),
           "WXARCHIVE_KAFKA_CACHE_DIR": str(tmp_path / "cache"), "WXARCHIVE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    return subprocess.run([sys.executable, "-m", "commands", *args], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[2])


def test_fetch_without_maven(tmp_path: Path) -> None:
    done = _run(tmp_path, "kafka", "fetch")
    assert done.returncode == 1
    assert done.stderr.startswith("wxarchive: error: `mvn` was not found on PATH. Maven is needed once")
    assert "Traceback" not in done.stderr


def test_start_without_java(tmp_path: Path) -> None:
    done = _run(tmp_path, "kafka", "start", "--port", "1")
    assert done.returncode == 1
    assert "`java` was not found on PATH. Java 17+ runs the local Kafka broker" in done.stderr
    assert not (tmp_path / "var" / "kafka" / "kafka.pid").exists()


def test_status_of_a_broker_never_started(tmp_path: Path) -> None:
    done = _run(tmp_path, "kafka", "status")
    assert done.returncode == 3
    assert done.stdout.startswith("Kafka is not running")
