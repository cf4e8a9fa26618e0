"""Test harness: one real Kafka broker per test session (the project's own launcher), a fresh chdb
directory per test, and `unit`/`integration` markers taken from the folder a test lives in."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deploy.kafka_broker import BrokerSpec, LocalKafka
from wxarchive.config import Settings
from wxarchive.errors import BrokerError, PrerequisiteError
from wxarchive.net import free_ports

if TYPE_CHECKING:  # clickhouse-connect is imported only by the tests that open ClickHouse
    from clickhouse_connect.driver.client import Client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).parent.name
        if kind in ("unit", "integration"):
            item.add_marker(getattr(pytest.mark, kind))


def broker_spec(run_dir: Path, port: int | None = None) -> BrokerSpec:
    """A broker on free loopback ports with its data under `run_dir`, jars from the shared cache."""
    defaults = Settings.load(env={k: v for k, v in os.environ.items() if k == "WXARCHIVE_KAFKA_CACHE_DIR"})
    chosen, controller_port = free_ports(2)
    return BrokerSpec(
        version=os.environ.get("WXARCHIVE_KAFKA_VERSION", defaults.kafka_version),
        cache_dir=defaults.kafka_cache_dir,
        run_dir=run_dir,
        host="127.0.0.1",
        port=port or chosen,
        controller_port=controller_port,
        heap="512m",
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """The session's broker. A free port can be taken between choosing it and the broker's bind: retry once."""
    broker = LocalKafka(broker_spec(tmp_path_factory.mktemp("kafka")))
    try:
        broker.start(timeout=120)
    except (PrerequisiteError, BrokerError) as exc:
        if "in use" not in str(exc):
            raise
        broker = LocalKafka(broker_spec(tmp_path_factory.mktemp("kafka-retry")))
        broker.start(timeout=120)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: LocalKafka) -> str:
    return kafka_broker.spec.bootstrap


@pytest.fixture
def topic_name() -> Callable[[str], str]:
    """Unique topic names, so tests sharing the session broker never see each other's records."""
    return lambda base: f"{base}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(tmp_path: Path, bootstrap: str) -> Settings:
    """Settings for one test: its own data directory and chdb path, the session broker."""
    return Settings.load(env={
        "WXARCHIVE_DATA_DIR": str(tmp_path / "var"),
        "WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap,
    })


@pytest.fixture
def chdb_dsn(tmp_path: Path) -> Iterator[str]:
    """A fresh embedded ClickHouse directory. chdb binds one path per process, so a test must close its
    clients before the next test opens another path; `open_clickhouse` below does that for it."""
    yield f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def open_clickhouse(chdb_dsn: str) -> Iterator[Callable[..., Client]]:
    from wxarchive.clickhouse import open_client

    clients = []

    def opener(**options: object) -> Client:
        client = open_client(chdb_dsn, **options)
        clients.append(client)
        return client

    yield opener
    for client in clients:
        client.close()
