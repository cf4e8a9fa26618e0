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


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_library_repeat_passes_once_per_interval_with_the_count_held_back() -> None:
    clock = _Clock()
    limit = logs.RepeatLimit(("aiokafka", "faust"), interval=30, clock=clock)
    shown = []
    for second in range(95):  # a broker away for 95 s, a reconnect error every 100 ms
        clock.now = 1000.0 + second
        for attempt in range(10):
            record = _record("aiokafka.client", 'Unable connect to "%s:%s": %s', "127.0.0.1", 9092,
                             f"[Errno 111] attempt {second * 10 + attempt}")
            if limit.filter(record):
                shown.append((second, getattr(record, "suppressed_repeats", 0)))
    # the first at once, then one per 30 s, each saying how many it stood for
    assert shown == [(0, 0), (30, 299), (60, 299), (90, 299)]


def test_shapes_are_counted_apart_and_numbers_do_not_make_a_new_shape() -> None:
    clock = _Clock()
    limit = logs.RepeatLimit(("aiokafka", "faust"), interval=30, clock=clock)
    assert limit.filter(_record("aiokafka.conn", "Unable connect to node with id 1"))
    assert not limit.filter(_record("aiokafka.conn", "Unable connect to node with id 2"))  # numbers only: same shape
    assert limit.filter(_record("aiokafka.conn", "Heartbeat failed: %s", "x"))  # another template
    assert limit.filter(_record("faust.transport", "Unable connect to node with id 1"))  # another logger
    for _ in range(100):  # the archive's own lines, and look-alike names, are never held back
        assert limit.filter(_record("wxarchive.worker", "keyword follower lost Kafka"))
        assert limit.filter(_record("faustian", "not a library we quiet"))


def test_configure_rate_limits_library_chatter_but_not_our_own(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "text")
    for i in range(500):
        logging.getLogger("aiokafka.consumer.group_coordinator").error("Error sending request to node %s", i)
        logging.getLogger("mode.services").warning("[^--Fetcher]: Restarting after error %d", i)
    for _ in range(3):
        logging.getLogger("wxarchive.worker").warning("Kafka stopped answering")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5, lines
    assert sum("wxarchive.worker" in line for line in lines) == 3
    logs.configure("debug", "text")  # debugging shows everything
    for i in range(5):
        logging.getLogger("aiokafka.conn").error("Unable connect to %s", i)
    assert len(capsys.readouterr().err.strip().splitlines()) == 5
    logs.configure("info", "text")
