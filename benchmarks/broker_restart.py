"""How long the local broker takes to come back after a clean stop and after kill -9, with Kafka's default
broker session settings (the baseline) and with the launcher's.

    .venv/bin/python benchmarks/broker_restart.py [--rounds 3] [--records 2000] [--record-bytes 200]

For each configuration: a throwaway broker on free ports, the archive's topics (as `wxarchive up` creates
them), `--records` records written to PREFIX.raw with the durable producer (acks=all). Then `--rounds`
times each: a controlled stop (SIGTERM) or kill -9, and `LocalKafka.start`, which returns only after a real
request was answered; the figure is its own start-to-answer time. After every restart the raw topic must
still hold every record. Besides the total it prints, from the broker's own log (DATA_DIR/kafka/logs/
kafka.out), the registration wait: from "Incarnation … is now STARTING" to "Successfully registered broker",
the time the controller refused the new incarnation (DUPLICATE_BROKER_REGISTRATION) while it waited for the
dead one's session to expire. That part is waiting, not work, so it stays readable when other work on a
shared machine (its load average is printed too) stretches the JVM's start by seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.kafka_broker import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS, BrokerSpec, LocalKafka  # noqa: E402
from wxarchive.config import Settings  # noqa: E402
from wxarchive.kafka_clients import durable_producer, read_to_end  # noqa: E402
from wxarchive.net import free_ports  # noqa: E402
from wxarchive.topics import CONTACTS, DLQ, EVENTS, KEYWORDS, MESSAGES, MODERATION, RAW, ensure_topics  # noqa: E402

KAFKA_DEFAULTS = (("broker.session.timeout.ms", "9000"), ("broker.heartbeat.interval.ms", "2000"))
REFUSED = "DUPLICATE_BROKER_REGISTRATION"
STARTING = re.compile(r"^\[([\d-]+ [\d:,]+)\] INFO .* is now STARTING", re.M)
REGISTERED = re.compile(r"^\[([\d-]+ [\d:,]+)\] INFO .*Successfully registered broker", re.M)


def registration_wait(log: str) -> float:
    """Seconds from the broker's STARTING to its successful registration, read from its log's timestamps."""
    def when(pattern: re.Pattern[str]) -> datetime:
        found = pattern.search(log)
        if found is None:
            raise SystemExit(f"no line matching {pattern.pattern!r} in the broker's log")
        return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return (when(REGISTERED) - when(STARTING)).total_seconds()


def kill_hard(broker: LocalKafka) -> None:
    """kill -9 the broker's JVM and wait until it is gone (its pid file stays, as after a crash)."""
    pid = broker.status().pid
    assert pid is not None, "the broker is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and broker.status().running:
        time.sleep(0.05)


async def fill(settings: Settings, records: int, size: int) -> None:
    await ensure_topics(settings, RAW, DLQ, MESSAGES, EVENTS, CONTACTS, MODERATION, KEYWORDS)
    producer = durable_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(records):
            await producer.send(RAW.name(settings), os.urandom(size), key=f"acct|conv{i % 50}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def measure(label: str, overrides: tuple[tuple[str, str], ...], args: argparse.Namespace
            ) -> dict[str, list[tuple[float, float]]]:
    """(start-to-answer seconds, registration wait seconds) of each restart, by how the broker was stopped."""
    defaults = Settings.load(env={})
    with tempfile.TemporaryDirectory(prefix="broker-restart-") as tmp:
        port, controller_port = free_ports(2)
        broker = LocalKafka(BrokerSpec(defaults.kafka_version, defaults.kafka_cache_dir, Path(tmp), "127.0.0.1", port,
                                       controller_port, "512m", overrides))
        broker.start()
        settings = dataclasses.replace(defaults, kafka_bootstrap=broker.spec.bootstrap)
        asyncio.run(fill(settings, args.records, args.record_bytes))
        figures: dict[str, list[tuple[float, float]]] = {"clean stop": [], "kill -9": []}
        try:
            for _ in range(args.rounds):
                for how, stop in (("clean stop", broker.stop), ("kill -9", lambda: kill_hard(broker))):
                    stop()
                    seconds = broker.start().seconds
                    log = broker.log_file.read_text(errors="replace")
                    kept = len(asyncio.run(read_to_end(settings.kafka_bootstrap, RAW.name(settings))))
                    if kept != args.records:
                        raise SystemExit(f"{label}: after a {how} the raw topic holds {kept} of {args.records} records")
                    figures[how].append((seconds, registration_wait(log)))
                    print(f"{label:<44}  {how:<10}  {seconds:5.1f} s, registration wait {figures[how][-1][1]:4.1f} s "
                          f"(refused {log.count(REFUSED)}x)  load average {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            broker.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--record-bytes", type=int, default=200)
    args = parser.parse_args()
    ours = f"launcher (session {SESSION_TIMEOUT_MS} ms, hb {HEARTBEAT_INTERVAL_MS} ms)"
    results = {label: measure(label, overrides, args)
               for label, overrides in (("Kafka defaults (session 9000 ms, hb 2000 ms)", KAFKA_DEFAULTS), (ours, ()))}
    print("\nseconds, min / median / max: start to first answered request | of which registration wait")
    for label, figures in results.items():
        for how, pairs in figures.items():
            total, wait = [p[0] for p in pairs], [p[1] for p in pairs]
            print(f"  {label:<44} {how:<10} {_spread(total)} | {_spread(wait)}")


def _spread(values: list[float]) -> str:
    return f"{min(values):4.1f} / {statistics.median(values):4.1f} / {max(values):4.1f}"


if __name__ == "__main__":
    main()
