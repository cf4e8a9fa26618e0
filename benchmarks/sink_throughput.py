"""Sink throughput into the embedded ClickHouse, against a direct clickhouse-connect insert of the same rows.

    .venv/bin/python benchmarks/sink_throughput.py [--records 200000]

Setup, on a local broker pinned to core 1: simulated callbacks normalized into message records (as the
worker emits them) on PREFIX.messages. Then, each in its own process on core 0 with a fresh chdb directory
and the schema migrated:
- direct: the same records, already in memory, inserted with clickhouse-connect in blocks of 10,000 (the
  sink's default batch), once as JSONEachRow lines and once as Python row lists; the faster of the two is
  the baseline (the engine's own cost for these rows);
- consume: the sink's Kafka consumer alone (same settings), reading the topic and nothing else;
- sink: `Sink` consuming the topic, converting records to rows, inserting with deduplication tokens and
  committing offsets, timed from its start to the commit of the last record.
Target (issue 6): the sink at least 80% of the direct rate.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from wxarchive.config import Settings  # noqa: E402

from timing import start_pinned_broker  # noqa: E402

BLOCK = 10_000


def bench_settings(bootstrap: str, data_dir: str) -> Settings:
    return dataclasses.replace(
        Settings.load(env={"WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap, "WXARCHIVE_DATA_DIR": data_dir}),
        topic_prefix="sinkbench", kafka_partitions=4, sink_batch_rows=BLOCK)


def message_records(count: int) -> list[tuple[bytes, bytes]]:
    """Worker-shaped message records from simulated traffic (names filled in, as when the cache answers)."""
    import orjson

    from eyun.traffic import TrafficConfig, TrafficGenerator
    from schemas.callback import PayloadError
    from schemas.message import parse_message

    out = []
    for n, body in enumerate(TrafficGenerator(TrafficConfig(count=count, seed=5, duplicate_rate=0,
                                                            malformed_rate=0)).bodies()):
        try:
            m = parse_message(body)
        except PayloadError:
            continue
        doc = m.to_dict()
        doc.update(sender_name="张三", sender_remark="", sender_alias="", conversation_name="项目群", enriched=True,
                   received_ms=1_795_000_000_000 + n, source={"partition": n % 4, "offset": n}, moderation_hits=0)
        out.append((m.kafka_key.encode(), orjson.dumps(doc)))
    return out


async def setup(settings: Settings, count: int) -> int:
    from wxarchive.kafka_clients import durable_producer
    from wxarchive.topics import MESSAGES, ensure_topics

    await ensure_topics(settings, MESSAGES)
    producer = durable_producer(settings.kafka_bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        records = message_records(count)
        for key, value in records:
            await producer.send(MESSAGES.name(settings), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(records)


async def run_direct(settings: Settings, expected: int) -> dict[str, float]:
    """Both direct ways, on the same rows in memory: JSON lines (what the sink sends) and Python row lists
    (clickhouse-connect's native format); the faster one is the baseline."""
    import orjson

    from sinks.rows import MESSAGE_FIELDS
    from sinks.schema import migrate
    from wxarchive.clickhouse import open_client
    from wxarchive.kafka_clients import read_to_end
    from wxarchive.topics import MESSAGES

    lines = [r.value for r in await read_to_end(settings.kafka_bootstrap, MESSAGES.name(settings), timeout=300)]
    client = open_client(settings.clickhouse_dsn)
    migrate(client)
    started = time.perf_counter()
    for start in range(0, len(lines), BLOCK):
        client.raw_insert("wxarchive.messages", MESSAGE_FIELDS, b"\n".join(lines[start:start + BLOCK]), fmt="JSONEachRow")
    json_seconds = time.perf_counter() - started
    columns = [c for c in MESSAGE_FIELDS if c not in ("time_ms", "received_ms", "source")]
    rows = []
    for line in lines:
        doc = orjson.loads(line)
        rows.append([doc.get(c) if c != "extra" else doc.get("extra") or {} for c in columns])
    client.command("TRUNCATE TABLE wxarchive.messages")
    started = time.perf_counter()
    for start in range(0, len(rows), BLOCK):
        client.insert("wxarchive.messages", rows[start:start + BLOCK], column_names=columns)
    native_seconds = time.perf_counter() - started
    count = client.query("SELECT count() FROM wxarchive.messages").result_rows[0][0]
    client.close()
    return {"seconds": min(json_seconds, native_seconds), "json_seconds": json_seconds,
            "native_seconds": native_seconds, "rows": count}


async def run_consume(settings: Settings, expected: int) -> dict[str, float]:
    """Only what the sink's consumer does (same settings, a fresh group): the Kafka side of its cost."""
    from sinks.sink import sink_consumer
    from wxarchive.topics import MESSAGES

    consumer = sink_consumer(settings, "consume-only", MESSAGES.name(settings))
    await consumer.start()
    done, first = 0, 0.0
    try:
        while done < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=settings.sink_batch_rows)
            first = first or (time.perf_counter() if batches else 0.0)
            done += sum(len(records) for records in batches.values())
        return {"seconds": time.perf_counter() - first, "rows": done}
    finally:
        await consumer.stop()


async def run_sink(settings: Settings, expected: int) -> dict[str, float]:
    from sinks.sink import Sink

    sink = Sink(settings)
    await sink.start()
    started = time.perf_counter()
    task = asyncio.create_task(sink.run())
    try:
        while sink.stats.rows.get("messages", 0) < expected or sink.unflushed:
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        (count,), = await sink.clickhouse.query_rows("SELECT count() FROM wxarchive.messages")
    finally:
        sink.stop()
        await task
        await sink.close()
    return {"seconds": seconds, "rows": count, "inserts": sink.stats.inserts, "insert_seconds": sink.stats.insert_seconds}


def child(mode: str, bootstrap: str, data_dir: str, expected: int) -> None:
    settings = dataclasses.replace(bench_settings(bootstrap, data_dir), clickhouse_dsn=f"chdb://{data_dir}/ch-{mode}")
    runner = {"direct": run_direct, "consume": run_consume, "sink": run_sink}[mode]
    if os.environ.get("SINK_BENCH_PROFILE") and mode == "sink":
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, runner(settings, expected))
        with open(os.environ["SINK_BENCH_PROFILE"], "w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    else:
        result = asyncio.run(runner(settings, expected))
    print(json.dumps(result))


def main() -> None:
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--cpus", default="0", help="cpus the measured processes may use (default 0; the broker is on 1)")
    parser.add_argument("--child", choices=["direct", "consume", "sink"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.bootstrap, args.data_dir, args.expected)
        return
    work = Path(tempfile.mkdtemp(prefix="sink-bench-"))
    broker = start_pinned_broker(work / "kafka")
    try:
        settings = bench_settings(broker.spec.bootstrap, str(work))
        expected = asyncio.run(setup(settings, args.records))
        results = {}
        for mode in ("direct", "consume", "sink"):
            out = subprocess.run(["taskset", "-c", args.cpus, sys.executable, __file__, "--child", mode, "--bootstrap",
                                  broker.spec.bootstrap, "--data-dir", str(work), "--expected", str(expected)],
                                 stdout=subprocess.PIPE, text=True, check=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    direct, sink = results["direct"], results["sink"]
    assert direct["rows"] == sink["rows"] == expected, (direct, sink, expected)
    d_rate, s_rate = expected / direct["seconds"], expected / sink["seconds"]
    print(f"{expected:,} message rows into the embedded ClickHouse (chdb), one core; broker on the other")
    print(f"{'run':<58} {'rows/s':>9} {'seconds':>8}")
    for label, key in (("direct insert, JSONEachRow lines, blocks of 10,000", "json_seconds"),
                       ("direct insert, Python row lists, blocks of 10,000", "native_seconds")):
        print(f"{label:<58} {expected / direct[key]:>9,.0f} {direct[key]:>8.2f}")
    consume = results["consume"]
    print(f"{'consuming alone, the sink consumer settings (no insert)':<58} {expected / consume['seconds']:>9,.0f} "
          f"{consume['seconds']:>8.2f}")
    print(f"{'sink: consume, convert, insert with tokens, commit':<58} {s_rate:>9,.0f} {sink['seconds']:>8.2f}")
    ratio = s_rate / d_rate
    ceiling = direct["seconds"] / (direct["seconds"] + consume["seconds"])
    print(f"on one core inserting and consuming add up: the ceiling is about {ceiling:.2f} of direct")
    print(f"ratio sink/direct: {ratio:.2f} (target >= 0.80: {'met' if ratio >= 0.8 else 'MISSED'}); "
          f"{sink['inserts']:.0f} inserts taking {sink['insert_seconds']:.2f}s of the sink's {sink['seconds']:.2f}s")


if __name__ == "__main__":
    main()
