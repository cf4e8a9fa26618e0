"""The command line as a newcomer meets it: helpful --help, one-line errors, masked config output."""

import re
import subprocess
import sys

import pytest

from wxarchive.cli import build_parser, main

COMMANDS = [["up"], ["kafka", "fetch"], ["kafka", "start"], ["kafka", "stop"], ["kafka", "status"], ["config"],
            ["edge"], ["worker"], ["simulate"], ["fake-eyun"], ["keywords", "add"], ["keywords", "remove"],
            ["keywords", "list"], ["keywords", "import"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: wxarchive " + " ".join(command) in out
    if command != ["kafka"]:
        assert "--kafka-bootstrap" in out and "WXARCHIVE_KAFKA_BOOTSTRAP" in out


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("up", "kafka", "edge", "worker", "keywords", "simulate", "fake-eyun", "config"):
        assert re.search(rf"^    {name}\b", out, re.M), name


def test_config_prints_effective_values_masked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WXARCHIVE_CLICKHOUSE_DSN", "http://wx:topsecret@clickhouse:8123")
    assert main(["config", "--kafka-bootstrap", "broker:19092"]) == 0
    out = capsys.readouterr().out
    assert "WXARCHIVE_KAFKA_BOOTSTRAP=broker:19092" in out
    assert "WXARCHIVE_CLICKHOUSE_DSN=http://wx:****@clickhouse:8123" in out
    assert "topsecret" not in out


def test_describe_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--describe"]) == 0
    out = capsys.readouterr().out
    assert "WXARCHIVE_DATA_DIR\n  flag: --data-dir\n  default: var" in out


def test_bad_setting_is_one_line_error_without_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wxarchive.cli", "config"],
        env={"WXARCHIVE_LOG_LEVEL": "chatty", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "wxarchive: error: WXARCHIVE_LOG_LEVEL must be one of debug, info, warning, error, got 'chatty'"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["archive-everything"])
    assert done.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
