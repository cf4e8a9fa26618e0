"""Structured, quiet-by-default logging: logfmt for people, JSON lines for log shippers.

Fields are passed with `extra=`; the formatter emits every non-standard record attribute as a key.
Third-party libraries (aiokafka, faust, mode, clickhouse-connect) are held at WARNING unless debugging.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

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


def configure(level: str = "info", fmt: str = "text") -> None:
    """Install one stderr handler on the root logger; idempotent so tests and `up` may call it again."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    if level != "debug":
        handler.addFilter(_TransientNoise())
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
