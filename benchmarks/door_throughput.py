"""The door against the engine in-process, and the sink with readers at the door against the sink alone (issue 13,
benchmarks a and b), each pair measured in the same run.

    .venv/bin/python benchmarks/door_throughput.py [--part queries|share|both] [--messages 1000000] [--rounds 3]
        [--records 200000] [--readers 8]

a) queries: an archive of `--messages` generated chat messages (benchmarks/search.py's generator) in a fresh chdb
   directory. Every example query of docs/clickhouse.md, in turn, `--repeat` times, once in a process that opens
   the directory itself (clickhouse-connect's chdb client: the baseline) and once from this process through the
   door (clickhouse-connect's http:// client), the door served by a process of its own as the sink serves it;
   rounds alternate. Queries per second, the median over rounds. Target: the door at least 0.8 of in-process.
b) share: `--records` worker message records on a topic of a local broker (benchmarks/sink_throughput.py's
   setup). The sink service (sink and door, one process, core 0) consumes them all, once alone and once while
   `--readers` client threads (another process, core 1 with the broker) run the example queries through the door
   without pause; rows/s from the sink's start to its last insert. Target: with readers at least 0.7 of alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from wxarchive.config import Settings  # noqa: E402
from wxarchive.net import free_ports  # noqa: E402

DOCS = ROOT / "docs" / "clickhouse.md"


def example_queries() -> list[str]:
    return [q.strip() for q in re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S)]


def door_settings(data_dir: Path, **changes: Any) -> Settings:
    (port,) = free_ports(1)
    return dataclasses.replace(Settings.load(env={"WXARCHIVE_DATA_DIR": str(data_dir)}), door_port=port, **changes)


def verdict(ratios: list[float], target: float) -> str:
    """The median of per-round ratios, the rounds, and whether it meets the target."""
    ratio = statistics.median(ratios)
    return (f"{ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= {target:.2f}: "
            f"{'met' if ratio >= target else 'MISSED'})")


# -- a) the door against the engine in-process -----------------------------------------------------------


def fill(data_dir: Path, messages: int) -> None:
    from search import fill as fill_messages

    from sinks.schema import migrate
    from wxarchive.clickhouse import open_client

    client = open_client(door_settings(data_dir).clickhouse_dsn)
    try:
        migrate(client)
        fill_messages(client, "wxarchive.messages", messages)
    finally:
        client.close()


def run_queries(client: Any, repeat: int) -> dict[str, float]:
    queries = example_queries()
    for sql in queries:  # warm: the first run of each reads its parts from disk
        client.query(sql)
    started = time.perf_counter()
    for _ in range(repeat):
        for sql in queries:
            client.query(sql)
    seconds = time.perf_counter() - started
    return {"queries": repeat * len(queries), "seconds": seconds}


def child_direct(data_dir: Path, repeat: int) -> None:
    from wxarchive.clickhouse import open_client

    client = open_client(door_settings(data_dir).clickhouse_dsn)
    try:
        print(json.dumps(run_queries(client, repeat)), flush=True)
    finally:
        client.close()


def child_door(data_dir: Path, port: int) -> None:
    """Serve the door on `port` as the sink's process does, until stdin closes."""
    from door.server import Door
    from wxarchive.engine_share import EngineShare

    async def main() -> None:
        door = Door(dataclasses.replace(door_settings(data_dir), door_port=port), EngineShare())
        await door.start()
        print(door.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await door.stop()

    asyncio.run(main())


def part_queries(args: argparse.Namespace, work: Path) -> None:
    import clickhouse_connect

    data = work / "queries"
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", "fill", "--data-dir", str(data), "--messages",
                    str(args.messages)], check=True)
    print(f"a) archive of {args.messages:,} messages built in {time.perf_counter() - started:.0f}s", flush=True)
    direct_rates, door_rates = [], []
    for round_no in range(args.rounds):
        for mode in (("direct", "door") if round_no % 2 == 0 else ("door", "direct")):
            if mode == "direct":
                out = subprocess.run([sys.executable, __file__, "--child", "direct", "--data-dir", str(data),
                                      "--repeat", str(args.repeat)], check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                direct_rates.append(result["queries"] / result["seconds"])
            else:
                (port,) = free_ports(1)
                server = subprocess.Popen([sys.executable, __file__, "--child", "door", "--data-dir", str(data),
                                           "--port", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True)
                assert server.stdout is not None and server.stdin is not None
                url = server.stdout.readline().strip()
                if not url:
                    raise SystemExit("the door process did not start (its error is above)")
                client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False, compress=False)
                try:
                    result = run_queries(client, args.repeat)
                finally:
                    client.close()
                    server.stdin.close()
                    server.wait(timeout=60)
                door_rates.append(result["queries"] / result["seconds"])
            print(f"  round {round_no + 1} {mode}: {(direct_rates if mode == 'direct' else door_rates)[-1]:.1f} "
                  f"queries/s", flush=True)
    print(f"a) the {len(example_queries())} example queries of docs/clickhouse.md x {args.repeat}, over "
          f"{args.messages:,} messages: in-process chdb {statistics.median(direct_rates):.1f} queries/s, through "
          f"the door {statistics.median(door_rates):.1f} queries/s; door/in-process "
          f"{verdict([d / i for d, i in zip(door_rates, direct_rates)], 0.8)}")


# -- b) the sink with readers at the door against the sink alone ----------------------------------------


def child_sink(bootstrap: str, data_dir: Path, expected: int, prefix: str) -> None:
    """The sink service (sink and door) consuming every record; prints the door's URL first, the result last."""
    from sink_throughput import bench_settings

    from sinks.service import serve

    async def main() -> dict[str, float]:
        (door_port, sink_port) = free_ports(2)
        settings = dataclasses.replace(bench_settings(bootstrap, str(data_dir)), door_port=door_port,
                                       sink_port=sink_port, clickhouse_dsn=f"chdb://{data_dir}/ch-{prefix}")
        async with serve(settings) as service:
            assert service.door is not None
            print(service.door.url, flush=True)
            await service.started()
            started = time.perf_counter()
            sink = service.sink
            while sink.stats.rows.get("messages", 0) < expected or sink.unflushed:
                await asyncio.sleep(0.01)
            seconds = time.perf_counter() - started
            return {"seconds": seconds, "rows": sink.stats.rows.get("messages", 0),
                    "yield_seconds": service.door.share.reader_wait_seconds, "inserts": sink.stats.inserts}

    print(json.dumps(asyncio.run(main())), flush=True)


def readers(url: str, count: int, stop: threading.Event) -> list[int]:
    """`count` threads, each with its own http client, running the example queries in turn until `stop`."""
    import logging

    import clickhouse_connect

    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)  # refused connections once the sink stops
    done = [0] * count
    queries = example_queries()

    def one(n: int) -> None:
        client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False, compress=False)
        try:
            i = n
            while not stop.is_set():
                try:
                    client.query(queries[i % len(queries)])
                    done[n] += 1
                except Exception:  # the schema may not be migrated yet in the first moments
                    time.sleep(0.05)
                i += 1
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    return done


async def forget_group(settings: Settings) -> None:
    """The next run consumes the topic from its start again: the sink's group commits offset 0 everywhere."""
    from aiokafka import AIOKafkaConsumer

    from wxarchive.kafka_clients import topic_partitions
    from wxarchive.topics import MESSAGES

    topic = MESSAGES.name(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=f"{settings.topic_prefix}-sink",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()


def part_share(args: argparse.Namespace, work: Path) -> None:
    from sink_throughput import bench_settings, setup

    from timing import start_pinned_broker

    broker = start_pinned_broker(work / "kafka")
    results: dict[str, list[dict[str, float]]] = {"alone": [], "readers": []}
    try:
        expected = asyncio.run(setup(bench_settings(broker.spec.bootstrap, str(work)), args.records))
        n = 0
        for round_no in range(args.rounds):
            for mode in (("alone", "readers") if round_no % 2 == 0 else ("readers", "alone")):
                n += 1
                sink = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--child", "sink",
                                         "--bootstrap", broker.spec.bootstrap, "--data-dir", str(work),
                                         "--expected", str(expected), "--prefix", f"r{n}"],
                                        stdout=subprocess.PIPE, text=True)
                assert sink.stdout is not None
                url = sink.stdout.readline().strip()
                if not url:
                    raise SystemExit("the sink process did not start (its error is above)")
                stop = threading.Event()
                done = readers(url, args.readers, stop) if mode == "readers" else []
                started = time.perf_counter()
                out = sink.stdout.read()
                stop.set()
                sink.wait(timeout=60)
                result = json.loads(out.strip().splitlines()[-1])
                result["queries"] = sum(done)
                result["wall"] = time.perf_counter() - started
                results[mode].append(result)
                print(f"  round {round_no + 1} {mode}: {result['rows'] / result['seconds']:,.0f} rows/s"
                      + (f", {sum(done)} queries by {args.readers} readers ({sum(done) / result['wall']:.1f}/s); "
                         f"readers yielded {result['yield_seconds']:.1f}s to inserts" if done else ""), flush=True)
                asyncio.run(forget_group(bench_settings(broker.spec.bootstrap, str(work))))
    finally:
        broker.stop()
    alone = [r["rows"] / r["seconds"] for r in results["alone"]]
    with_readers = [r["rows"] / r["seconds"] for r in results["readers"]]
    print(f"b) the sink (and its door) on core 0 consuming {expected:,} message records: alone "
          f"{statistics.median(alone):,.0f} rows/s; with {args.readers} readers querying through the door "
          f"{statistics.median(with_readers):,.0f} rows/s; ratio {verdict([w / a for w, a in zip(with_readers, alone)], 0.7)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["queries", "share", "both"], default="both")
    parser.add_argument("--messages", type=int, default=1_000_000, help="a) messages in the archive")
    parser.add_argument("--repeat", type=int, default=5, help="a) runs of every example query per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=200_000, help="b) message records the sink consumes")
    parser.add_argument("--readers", type=int, default=8, help="b) clients querying through the door")
    parser.add_argument("--child", choices=["fill", "direct", "door", "sink"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "fill":
        return fill(Path(args.data_dir), args.messages)
    if args.child == "direct":
        return child_direct(Path(args.data_dir), args.repeat)
    if args.child == "door":
        return child_door(Path(args.data_dir), args.port)
    if args.child == "sink":
        return child_sink(args.bootstrap, Path(args.data_dir), args.expected, args.prefix)
    work = Path(tempfile.mkdtemp(prefix="door-bench-"))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        if args.part in ("queries", "both"):
            part_queries(args, work)
        if args.part in ("share", "both"):
            part_share(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
