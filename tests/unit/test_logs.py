"""Log lines are structured (fields survive as keys) and third-party chatter is held back."""

import logging

import orjson
import pytest

from wxarchive import logs


def test_logfmt_quotes_and_keeps_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "text")
    logging.getLogger("wxarchive.test").info("broker started", extra={"pid": 42, "where": "127.0.0.1:9092 (local)"})
    line = capsys.readouterr().err.strip()
    assert 'level=info logger=wxarchive.test msg="broker started" pid=42 where="127.0.0.1:9092 (local)"' in line


def test_json_lines_and_quiet_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    logging.getLogger("aiokafka").info("metadata refreshed")  # held back
    logging.getLogger("wxarchive.test").warning("slow", extra={"ms": 12.5})
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = orjson.loads(lines[0])
    assert record["msg"] == "slow" and record["ms"] == 12.5 and record["level"] == "warning"
