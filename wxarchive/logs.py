"""Structured, quiet-by-default logging: logfmt for people, JSON lines for log shippers.

Fields are passed with `extra=`; the formatter emits every non-standard record attribute as a key.
Third-party libraries (aiokafka, faust, mode, clickhouse-connect) are held at WARNING unless debugging, and
their repeats are rate-limited (`RepeatLimit`): while a broker is away their clients retry many times a
second and log each attempt, which once wrote 10,774 lines in a 73 s outage.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable

import orjson

__all__ = ["RepeatLimit", "configure"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_NOISY = ("aiokafka", "kafka", "faust", "mode", "clickhouse_connect", "chdb", "aiohttp", "asyncio")


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(_fields(record), default=str).decode()


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = str(value)
            if not text or any(c in text for c in ' ="\n'):
                text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
            parts.append(f"{key}={text}")
        return " ".join(parts)


class _TransientNoise(logging.Filter):
    """aiokafka logs at ERROR while a new consumer group's coordinator is being elected, a normal second on a
    fresh broker that it retries itself; shown only when debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "GroupCoordinatorNotAvailableError" not in record.getMessage()


_DIGITS = re.compile(r"\d+")
REPEAT_INTERVAL_S = 30.0


class RepeatLimit(logging.Filter):
    """Lets a library's message through the first time, then at most once per `interval` seconds per shape.

    A shape is (logger, message template with its numbers blanked, exception type): "Unable connect to %s"
    from aiokafka.client is one shape whichever broker and errno it names. The line let through after
    a quiet spell carries `suppressed_repeats=N`, the repeats held back since the last one shown, so the log still
    says how often it happened. Records from loggers outside `prefixes` (the archive's own) always pass.
    Installed on the handler, not the library loggers, because a logger's filters do not see its children's
    records (aiokafka logs from aiokafka.conn, aiokafka.consumer.group_coordinator, …). Thread-safe: faust's
    consumer logs from its own thread.
    """

    def __init__(self, prefixes: tuple[str, ...], interval: float = REPEAT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._shown: dict[tuple[str, str, str], tuple[float, int]] = {}  # shape -> (last shown, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if not _library(record.name, self.prefixes):
            return True
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        shape = (record.name, _DIGITS.sub("#", str(record.msg)), exc_type)
        now = self._clock()
        with self._lock:
            last = self._shown.get(shape)
            if last is not None and now - last[0] < self.interval:
                self._shown[shape] = (last[0], last[1] + 1)
                return False
            if len(self._shown) > 10_000:  # shapes are few; this only bounds a library that logs unique text
                self._shown = {k: v for k, v in self._shown.items() if now - v[0] < self.interval}
            self._shown[shape] = (now, 0)
        if last is not None and last[1]:
            record.suppressed_repeats = last[1]
        return True


def _library(name: str, prefixes: tuple[str, ...]) -> bool:
    """`name` is one of `prefixes` or below one ("aiokafka.conn"), not merely alike ("kafkaesque")."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Install one stderr handler on the root logger; idempotent so tests and `up` may call it again."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    if level != "debug":
        handler.addFilter(_TransientNoise())
        handler.addFilter(RepeatLimit(_NOISY))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
