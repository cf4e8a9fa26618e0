"""The one settings object: local defaults, overridden by WXARCHIVE_* variables, overridden by CLI flags.

Every field declares its help text once; the environment variable name, the CLI flag, `wxarchive config`
and the README's configuration table are all derived from it, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wxarchive.errors import ConfigError

__all__ = ["Settings", "describe", "env_name", "flag_name", "mask_dsn"]

ENV_PREFIX = "WXARCHIVE_"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def _setting(default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wxarchive" / "kafka"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        Path("var"), "Local state: embedded ClickHouse, local broker data and logs, pid files."
    )
    kafka_bootstrap: str = _setting(
        "127.0.0.1:9092",
        "Kafka bootstrap servers (host:port[,host:port]). A loopback address is served by the local broker.",
    )
    kafka_version: str = _setting(
        "4.3.1", "Apache Kafka version the local broker runs (resolved from Maven Central)."
    )
    kafka_cache_dir: Path = _setting(
        _default_cache_dir(), "Where the local broker's jars are cached (fetched once, then offline)."
    )
    kafka_controller_port: int = _setting(
        0, "KRaft controller port of the local broker; 0 means the broker port + 1."
    )
    kafka_heap: str = _setting("512m", "Java heap (-Xmx) of the local broker.")
    kafka_replication_factor: int = _setting(
        1, "Replication factor of the topics wxarchive creates: 1 on the local broker, 3 on a cluster."
    )
    topic_prefix: str = _setting(
        "wxarchive", "Prefix of every Kafka topic name (PREFIX.raw, PREFIX.dlq, …), to share a cluster."
    )
    kafka_partitions: int = _setting(
        4, "Partitions of the topics wxarchive creates; workers scale out up to this many per topic."
    )
    clickhouse_dsn: str = _setting(
        "",
        "ClickHouse: chdb://PATH (embedded, one owner process) or http(s)://user:pass@host:port. "
        "Empty means chdb://DATA_DIR/clickhouse.",
    )
    eyun_url: str = _setting(
        "", "E云 API base URL (http://域名地址). Empty: `wxarchive up` runs the fake E云 server instead."
    )
    eyun_token: str = _setting("", "E云 Authorization value (from /member/login). A secret: never printed.", secret=True)
    edge_host: str = _setting("127.0.0.1", "Address the ingest edge listens on (0.0.0.0 to accept E云 from outside).")
    edge_port: int = _setting(8080, "Port of the ingest edge.")
    edge_secret: str = _setting(
        "", "Shared secret in the callback URL: POST /callback/SECRET (or ?secret=). Without one, `wxarchive edge` "
        "refuses to start unless run as `wxarchive edge --insecure` (local use), and `wxarchive up` runs its edge "
        "for loopback use only.",
        secret=True,
    )
    edge_account_secrets: str = _setting(
        "", "Per-account secrets, wcId=SECRET,wcId=SECRET: such a secret admits only that account's callbacks.",
        secret=True,
    )
    edge_allow_ips: str = _setting("", "Source addresses allowed, comma-separated IPs or CIDRs; empty allows any.")
    edge_max_body_bytes: int = _setting(1024 * 1024, "Largest callback body the edge accepts (413 above).")
    edge_produce_timeout: float = _setting(
        4.0, "Seconds a callback may wait for Kafka before the edge answers 503 (E云 gives up after 6)."
    )
    edge_spool: bool = _setting(
        False, "Keep accepting while Kafka is down: fsync callbacks to DATA_DIR/edge-spool and drain them later."
    )
    edge_spool_max_mb: int = _setting(1024, "Spool size limit in MB; beyond it the edge answers 503 again.")
    edge_id: str = _setting("", "Name of this edge in record headers and metrics. Empty: the host name.")
    edge_trusted_proxies: str = _setting(
        "", "Proxies whose X-Forwarded-For the edge believes, comma-separated IPs or CIDRs; empty: none, the peer "
        "address is the source.")
    edge_ops_host: str = _setting("127.0.0.1", "Address of the edge's /healthz, /readyz and /metrics when they have their own port.")
    edge_ops_port: int = _setting(
        0, "Port of the edge's /healthz, /readyz and /metrics; the callback port then serves only /callback. "
        "0: they stay on the callback port.")
    edge_max_url_bytes: int = _setting(8192, "Longest request target (path and query) the edge reads (414 above).")
    edge_max_header_bytes: int = _setting(8192, "Largest single request header, name and value (431 above).")
    edge_max_head_bytes: int = _setting(16384, "Largest request head: request line and all headers (431 above).")
    edge_max_headers: int = _setting(100, "Most headers in one request (431 above).")
    edge_head_timeout: float = _setting(
        10.0, "Seconds from a connection, or from the end of the previous answer, to the end of a request's head (408).")
    edge_body_timeout: float = _setting(10.0, "Seconds from the end of a request's head to the end of its body (408).")
    edge_keepalive_timeout: float = _setting(
        5.0, "Seconds an idle connection stays open, also one that never sent a byte.")
    edge_keepalive_requests: int = _setting(1000, "Requests one connection may carry; the last answer closes it.")
    edge_max_connections: int = _setting(
        1000, "Open connections; one more closes the oldest idle one, or gets 503 if none is idle. Lowered to fit "
        "the open-file limit.")
    edge_max_requests: int = _setting(1000, "Requests handled at once; beyond, 503 at once.")
    worker_host: str = _setting("127.0.0.1", "Address of the worker's health and metrics endpoint.")
    worker_port: int = _setting(8082, "Port of the worker's health and metrics endpoint (/healthz, /readyz, /metrics).")
    worker_store: str = _setting(
        "rocksdb://", "Where the worker keeps its dedupe state: rocksdb:// (on disk under DATA_DIR, via rocksdict) or memory://."
    )
    worker_dedupe_days: int = _setting(7, "How long the worker remembers a message identity to drop its duplicates.")
    worker_enrich_timeout: float = _setting(
        5.0, "Seconds a message may wait for its getContact lookup before it goes on, marked not enriched."
    )
    worker_contact_ttl_hours: int = _setting(24, "After this many hours a cached contact is looked up again.")
    sink_host: str = _setting("127.0.0.1", "Address of the sink's health and metrics endpoint.")
    sink_port: int = _setting(8083, "Port of the sink's health and metrics endpoint (/healthz, /readyz, /metrics).")
    sink_batch_rows: int = _setting(10000, "The sink inserts when this many rows are buffered...")
    sink_batch_seconds: float = _setting(1.0, "...or when its oldest buffered row is this many seconds old.")
    door_host: str = _setting(
        "127.0.0.1", "Address of the door: the ClickHouse HTTP interface the sink serves read-only in embedded mode."
    )
    door_port: int = _setting(8123, "Port of the door (ClickHouse's own HTTP port by default); 0 turns the door off.")
    door_user: str = _setting("reader", "The user name readers give the door (basic auth or X-ClickHouse-User).")
    door_password: str = _setting(
        "", "The door's password. Empty: generated on first start and kept in DATA_DIR/door-password.", secret=True
    )
    door_max_queries: int = _setting(4, "Queries the door runs at once; more wait in line (the sink's inserts go first).")
    door_max_execution_time: float = _setting(60.0, "Seconds a query through the door may run (ClickHouse's max_execution_time).")
    door_max_memory_bytes: int = _setting(2 * 1024**3, "Memory one query through the door may use (max_memory_usage).")
    read_dsn: str = _setting(
        "", "How readers (api, sql) reach ClickHouse: http(s)://USER:PASSWORD@HOST:PORT. Empty: the door in "
        "embedded mode, WXARCHIVE_CLICKHOUSE_DSN for a server."
    )
    api_host: str = _setting("127.0.0.1", "Address of the read-side API (wxarchive api).")
    api_port: int = _setting(8084, "Port of the read-side API.")
    scrm_uins: str = _setting(
        "", "How the SCRM names accounts: uin=wcId pairs, comma-separated. A uin not listed is taken as the wcId itself."
    )
    api_sql_max_rows: int = _setting(100_000, "Most rows a read-only SQL query through the API returns.")
    api_sql_max_bytes: int = _setting(64 * 1024**2, "Most result bytes a read-only SQL query through the API returns.")
    api_sql_timeout: float = _setting(30.0, "Seconds a read-only SQL query through the API may run.")
    log_level: str = _setting("info", "Log level: " + ", ".join(LOG_LEVELS) + ".")
    log_format: str = _setting("text", "Log format: text (logfmt) or json (one object per line).")

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Build from `env` (default os.environ) and explicit overrides (CLI flags; None means unset)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw, source=env_name(f.name))
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = _convert(fields_by_name()[name], value, source=flag_name(name))
        return cls(**values)._resolved()  # noqa: SLF001  (the class's own validation, on the instance it built)

    def _resolved(self) -> Settings:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"{env_name('log_level')} must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"{env_name('log_format')} must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.kafka_replication_factor < 1:
            raise ConfigError(f"{env_name('kafka_replication_factor')} must be at least 1")
        if self.kafka_partitions < 1:
            raise ConfigError(f"{env_name('kafka_partitions')} must be at least 1")
        if self.worker_store.split("://")[0] not in ("rocksdb", "memory"):
            raise ConfigError(f"{env_name('worker_store')} must be rocksdb:// or memory://, got {self.worker_store!r}")
        if self.worker_enrich_timeout <= 0 or self.worker_dedupe_days < 1 or self.worker_contact_ttl_hours < 1:
            raise ConfigError("the worker's enrich timeout, dedupe days and contact TTL must be positive")
        if self.sink_batch_rows < 1 or self.sink_batch_seconds <= 0:
            raise ConfigError("the sink's batch rows and seconds must be positive")
        if not 0 <= self.door_port <= 65535 or not 0 <= self.api_port <= 65535:
            raise ConfigError("the door's and the API's ports must be port numbers (0: the door off)")
        if self.door_max_queries < 1 or self.door_max_execution_time <= 0 or self.door_max_memory_bytes < 1:
            raise ConfigError("the door's query count, execution time and memory limit must be positive")
        if self.api_sql_max_rows < 1 or self.api_sql_max_bytes < 1 or self.api_sql_timeout <= 0:
            raise ConfigError("the API's SQL row, byte and time limits must be positive")
        if any("=" not in pair or not all(part.strip() for part in pair.split("=", 1))
               for pair in self.scrm_uins.split(",") if pair.strip()):
            raise ConfigError(f"{env_name('scrm_uins')} is uin=wcId pairs separated by commas, got {self.scrm_uins!r}")
        if self.read_dsn and self.read_dsn.split("://", 1)[0] not in ("http", "https"):
            raise ConfigError(f"{env_name('read_dsn')} must start with http:// or https://, got {mask_dsn(self.read_dsn)!r}")
        if self.edge_max_body_bytes < 1024:
            raise ConfigError(f"{env_name('edge_max_body_bytes')} must be at least 1024")
        if self.edge_produce_timeout <= 0:
            raise ConfigError(f"{env_name('edge_produce_timeout')} must be positive")
        if not 0 <= self.kafka_controller_port <= 65535:
            raise ConfigError(f"{env_name('kafka_controller_port')} must be a port number, got {self.kafka_controller_port}")
        dsn = self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"
        scheme = dsn.split("://", 1)[0] if "://" in dsn else ""
        if scheme not in ("chdb", "http", "https"):
            raise ConfigError(
                f"{env_name('clickhouse_dsn')} must start with chdb://, http:// or https://, got {mask_dsn(dsn)!r}"
            )
        return dataclasses.replace(self, clickhouse_dsn=dsn, edge_id=self.edge_id or socket.gethostname())

    def uin_accounts(self) -> dict[str, str]:
        """WXARCHIVE_SCRM_UINS as a mapping from the SCRM's uin to the archive's wcId."""
        pairs = (pair.split("=", 1) for pair in self.scrm_uins.split(",") if pair.strip())
        return {uin.strip(): wc_id.strip() for uin, wc_id in pairs}

    def as_env(self) -> dict[str, str]:
        """Every setting as its WXARCHIVE_* variable, for a child process to load the same configuration."""
        return {env_name(f.name): str(getattr(self, f.name)).lower() if isinstance(getattr(self, f.name), bool)
                else str(getattr(self, f.name)) for f in fields(self)}

    def __repr__(self) -> str:
        """Masked like `masked()`: a Settings in a log line or a traceback shows no secret."""
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.masked().items()) + ")"

    def masked(self) -> dict[str, str]:
        """The effective values as text, with secrets and DSN passwords hidden: safe to print and log."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = str(getattr(self, f.name))
            if f.metadata["secret"] and value:
                value = "****"
            elif f.name.endswith("dsn"):
                value = mask_dsn(value)
            out[f.name] = value
        return out


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def fields_by_name() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in fields(Settings)}


def describe() -> list[tuple[str, str, str, str]]:
    """(env var, CLI flag, default, help) per setting, for `wxarchive config --describe` and the README."""
    rows = []
    for f in fields(Settings):
        default = str(f.default) if f.name != "kafka_cache_dir" else "$XDG_CACHE_HOME/wxarchive/kafka (~/.cache/…)"
        rows.append((env_name(f.name), flag_name(f.name), default, f.metadata["help"]))
    return rows


def mask_dsn(dsn: str) -> str:
    """Hide the password of a URL-style DSN (http://user:secret@host -> http://user:****@host)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "****"
    if parts.password is None:
        return dsn
    netloc = f"{parts.username or ''}:****@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


_TYPES: dict[str, type] = {"Path": Path, "int": int, "str": str, "bool": bool, "float": float}


def _convert(f: dataclasses.Field[Any], raw: Any, *, source: str) -> Any:
    kind = f.type if isinstance(f.type, type) else _TYPES[str(f.type)]
    if isinstance(raw, kind) and kind is not str:
        return raw
    text = str(raw).strip()
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source} must be true or false, got {text!r}")
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{source} must be a number, got {text!r}") from None
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{source} must be a whole number, got {text!r}") from None
    if kind is Path:
        return Path(text).expanduser()
    return text.lower() if f.name in ("log_level", "log_format") else text
