"""The faust-streaming application, configured once for the archive's broker and durability rules.

Why these settings: faust's defaults assume a three-broker cluster and leader-acks; the archive needs
acks=all (invariant 1) and must work against the single-node local broker. faust turns on producer
idempotence only under exactly-once processing, so at-least-once workers rely on downstream dedupe
(invariant 2) for the duplicates a retried send can add.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from wxarchive.config import Settings

__all__ = ["create_app"]


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip()]


def create_app(
    settings: Settings,
    app_id: str = "wxarchive-worker",
    *,
    store: str = "memory://",
    partitions: int = 1,
    web_port: int | None = None,
) -> faust.App:
    """A faust App for `settings`; `web_port=None` disables faust's own web server (tests, tools)."""
    datadir = Path(settings.data_dir).resolve() / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    return faust.App(
        app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        store=store,
        datadir=str(datadir),
        topic_partitions=partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # a restarted or crashed worker's partitions move on within seconds, not faust's default minute
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind="127.0.0.1",
    )


def running_consumer(app: faust.App) -> Any | None:
    """The app's consumer once faust made one, else None. `app.consumer` would create one on first access (before
    faust's own start has configured it), so this is the one place that reads faust's private attribute."""
    return getattr(app, "_consumer", None)
