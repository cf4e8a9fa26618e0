"""The command line as a newcomer meets it: helpful --help, one-line errors, masked config output."""

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from commands.main import build_parser, main

COMMANDS = [["up"], ["kafka", "fetch"], ["kafka", "start"], ["kafka", "stop"], ["kafka", "status"], ["config"],
            ["edge"], ["worker"], ["sink"], ["migrate"], ["sql"], ["simulate"], ["fake-eyun"], ["keywords", "add"],
            ["keywords", "remove"], ["keywords", "list"], ["keywords", "import"]]


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
        [sys.executable, "-m", "commands", "config"],
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


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                           argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _false_flags(root: argparse.ArgumentParser) -> list[str]:
    """Each --flag a --help text names that is not an option of the command it speaks of: the command whose help it
    is, or the one named just before it on the same line (as in `wxarchive edge --insecure`), nor of the root."""
    commands = dict(_commands(root))
    mention = re.compile(r"wxarchive((?: [a-z][a-z-]*)+)|(?<![\w-])(--[a-z][a-z0-9-]*)")
    wrong = []
    for path, parser in commands.items():
        for line in parser.format_help().splitlines():
            speaks_of = path
            for named, flag in mention.findall(line):
                if named:
                    words = tuple(named.split())
                    speaks_of = max((words[:n] for n in range(len(words) + 1) if words[:n] in commands), key=len)
                elif flag not in _options(commands[speaks_of]) | _options(root):
                    wrong.append(f"wxarchive {' '.join(path)} --help offers {flag} of "
                                 f"`wxarchive {' '.join(speaks_of)}`: {line.strip()}")
    return wrong


def test_no_help_offers_a_flag_its_command_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newcomer once copied `--insecure` from `up --help`, which `up` does not take."""
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option and paragraph, so a mention stays on its flag's line
    assert _false_flags(build_parser()) == []


def test_the_help_check_sees_a_false_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_parser()
    claim = "  --edge-secret  run `wxarchive edge --insecure` or `wxarchive up --insecure`"
    monkeypatch.setattr(argparse.ArgumentParser, "format_help", lambda self: claim if self.prog == "wxarchive up" else "")
    assert _false_flags(root) == ["wxarchive up --help offers --insecure of `wxarchive up`: "
                                  "--edge-secret  run `wxarchive edge --insecure` or `wxarchive up --insecure`"]


def test_keywords_add_allow_takes_no_category_or_severity(capsys: pytest.CaptureFixture[str]) -> None:
    """An allow-list phrase silences hits inside it; a category or severity for it would be silently dropped."""
    assert main(["keywords", "add", "赌气", "--allow", "--severity", "3"]) == 2
    assert capsys.readouterr().err == ("wxarchive: error: keywords add --allow: an allow-list phrase silences hits "
                                       "inside it and has no category or severity; leave out --category and "
                                       "--severity\n")
