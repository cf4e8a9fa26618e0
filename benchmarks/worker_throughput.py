"""Worker throughput, raw -> messages, against a bare aiokafka consume->produce passthrough of the same records.

    .venv/bin/python benchmarks/worker_throughput.py [--records 100000]

A third run measures faust's own ceiling on the same records: an agent of the worker's shape
(take_events of 1,000 records / 50 ms) that does nothing. faust's per-event stream machinery costs about
100 µs a record on this class of machine, so that ceiling bounds what any faust agent can reach.

Setup, on a local broker: simulated callbacks (10% duplicates) already on the raw topic, 10,000 sensitive
words on the keywords topic, and every contact of the simulated directory on the contacts topic (cached
enrichment: no getContact call is needed; a fake E云 answers the address-list warm-up). Then, each pinned
to core 0 in its own process with the broker on core 1: the real worker (parse, dedupe state, enrichment
from the cache, moderation, outputs acknowledged before commit), and a passthrough that consumes the raw
topic and produces every record to another topic with the same durable producer settings. Each is timed
from its first record to its last. Targets (issue 5): at least 50% of the passthrough, and at least
10,000 messages/s on one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wxarchive.config import Settings  # noqa: E402

from timing import start_pinned_broker  # noqa: E402


def bench_settings(bootstrap: str, data_dir: str, eyun_url: str = "") -> Settings:
    return dataclasses.replace(
        Settings.load(env={"WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap, "WXARCHIVE_DATA_DIR": data_dir}),
        topic_prefix="bench", kafka_partitions=4, eyun_url=eyun_url, eyun_token="fake-eyun-token")


async def setup(settings: Settings, records: int) -> dict[str, int]:
    from eyun.traffic import DEMO_KEYWORDS, TrafficConfig, TrafficGenerator
    from moderation.keyword_admin import write_rules
    from schemas.keywords import KeywordRule
    from schemas.message import parse_message
    from streams.enrichment import snapshot_record
    from wxarchive.kafka_clients import durable_producer
    from wxarchive.topics import CONTACTS, KEYWORDS, RAW, Topic, ensure_topics

    generator = TrafficGenerator(TrafficConfig(count=records, seed=13, duplicate_rate=0.1, malformed_rate=0))
    bodies = generator.bodies()
    rng = random.Random(5)
    pool = [chr(c) for c in range(0x4E00, 0x9FA5)]
    words = {"".join(rng.choices(pool, k=rng.randint(2, 4))) for _ in range(12000)}
    rules = [KeywordRule(w, "bench") for w in sorted(words)[:10000 - len(DEMO_KEYWORDS)]]
    rules += [KeywordRule(w, c, s) for w, c, s in DEMO_KEYWORDS]
    await ensure_topics(settings, RAW, KEYWORDS, CONTACTS, Topic("passthrough"))
    await write_rules(settings, rules)
    producer = durable_producer(settings.kafka_bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        now = int(time.time() * 1000)
        for account in generator.directory.accounts:
            for contact in generator.directory.people.values():
                key, value = snapshot_record(account.wc_id, contact, now)
                await producer.send(CONTACTS.name(settings), value, key=key)
        for body in bodies:
            await producer.send(RAW.name(settings), body, key=parse_message(body, with_xml=False).kafka_key.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return {"records": len(bodies), "unique_messages": generator.summary.expected_unique_messages,
            "keywords": len(rules), "contacts": len(generator.directory.people) * len(generator.directory.accounts)}


async def run_worker(settings: Settings, expected: int) -> dict[str, float]:
    from streams.worker import Worker

    worker = Worker(settings)
    await worker.start()
    first = last = 0.0
    try:
        while worker.keywords.version == 0:
            await asyncio.sleep(0.05)
        while worker.stats.processed < expected:
            if worker.stats.processed and not first:
                first = time.perf_counter()
            await asyncio.sleep(0.01)
        last = time.perf_counter()
    finally:
        await worker.stop()
    s, e = worker.stats, worker.enricher.stats
    return {"seconds": last - first, "processed": s.processed, "duplicates": s.duplicates, "hits": s.hits,
            "cache_hits": e.cache_hits, "not_enriched": e.not_enriched, "batches": s.batches, "busy_seconds": s.busy_ms / 1000}


async def run_passthrough(settings: Settings, expected: int) -> dict[str, float]:
    from wxarchive.kafka_clients import durable_producer, manual_commit_consumer
    from wxarchive.topics import RAW

    consumer = manual_commit_consumer(settings.kafka_bootstrap, "bench-passthrough", RAW.name(settings),
                                      max_poll_records=1000)
    producer = durable_producer(settings.kafka_bootstrap)
    await consumer.start()
    await producer.start()
    done, first = 0, 0.0
    try:
        while done < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            if batches and not first:
                first = time.perf_counter()
            futures = [await producer.send("bench.passthrough", r.value, key=r.key)
                       for records in batches.values() for r in records]
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(futures)
        return {"seconds": time.perf_counter() - first, "processed": done}
    finally:
        await producer.stop()
        await consumer.stop()


async def run_faust_bare(settings: Settings, expected: int) -> dict[str, float]:
    """faust's own ceiling: the worker's agent shape (take_events of 1,000 / 50 ms) doing nothing at all."""
    from streams.faust_app import create_app
    from streams.worker import BATCH_MAX, BATCH_WITHIN_S, RAW_CODEC
    from wxarchive.topics import RAW

    app = create_app(settings, "bench-faust-bare", partitions=settings.kafka_partitions)
    seen = {"n": 0, "first": 0.0}

    async def bare(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            seen["first"] = seen["first"] or time.perf_counter()
            seen["n"] += len(events)

    app.agent(app.topic(RAW.name(settings), **RAW_CODEC), name="bare")(bare)
    await app.start()
    try:
        while seen["n"] < expected:
            await asyncio.sleep(0.01)
        return {"seconds": time.perf_counter() - seen["first"], "processed": seen["n"]}
    finally:
        await app.stop()


def child(mode: str, bootstrap: str, data_dir: str, eyun_url: str, expected: int, profile: bool) -> None:
    settings = dataclasses.replace(bench_settings(bootstrap, data_dir, eyun_url), worker_store="memory://")
    runner = {"worker": run_worker, "passthrough": run_passthrough, "faust": run_faust_bare}[mode]
    if profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, runner(settings, expected))
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(r"(streams|schemas|eyun)/|faust/(tables|topics)|aiokafka/producer", 25)
        print(text.getvalue(), file=sys.stderr)
    else:
        result = asyncio.run(runner(settings, expected))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--child", choices=["worker", "passthrough", "faust"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--eyun-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="print the worker's cProfile top 25 (slows it down)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.bootstrap, args.data_dir, args.eyun_url, args.expected, args.profile)
        return

    from eyun.directory import Directory
    from eyun.fake_server import FakeEyun, serve

    work = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    broker = start_pinned_broker(work / "kafka")

    async def with_fake_eyun() -> dict[str, dict[str, float]]:
        runner, url = await serve(FakeEyun(Directory.generate(seed=13, accounts=3)))
        try:
            settings = bench_settings(broker.spec.bootstrap, str(work / "var"), url)
            truth = await setup(settings, args.records)
            results: dict[str, dict[str, float]] = {"truth": truth}  # type: ignore[dict-item]
            for mode in ("passthrough", "faust", "worker"):
                proc = await asyncio.create_subprocess_exec(
                    "taskset", "-c", "0", sys.executable, __file__, "--child", mode, "--bootstrap",
                    broker.spec.bootstrap, "--data-dir", str(work / "var"), "--eyun-url", url,
                    "--expected", str(truth["records"]), *(["--profile"] if args.profile and mode == "worker" else []),
                    stdout=asyncio.subprocess.PIPE)
                out, _ = await proc.communicate()
                results[mode] = json.loads(out.decode().strip().splitlines()[-1])
            return results
        finally:
            await runner.cleanup()

    try:
        results = asyncio.run(with_fake_eyun())
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    truth, worker, passthrough, bare = results["truth"], results["worker"], results["passthrough"], results["faust"]
    worker_rate = worker["processed"] / worker["seconds"]
    pass_rate = passthrough["processed"] / passthrough["seconds"]
    bare_rate = bare["processed"] / bare["seconds"]
    print(f"{truth['records']:,} raw records ({truth['unique_messages']:,} unique messages, 10% duplicates), "
          f"{truth['keywords']:,} keywords, {truth['contacts']:,} cached contacts; one process on cpu 0, broker on cpu 1")
    print(f"{'run':<46} {'records/s':>10} {'seconds':>8}")
    print(f"{'bare aiokafka consume -> produce (acks=all)':<46} {pass_rate:>10,.0f} {passthrough['seconds']:>8.2f}")
    print(f"{'faust agent, same batches, doing nothing':<46} {bare_rate:>10,.0f} {bare['seconds']:>8.2f}")
    print(f"{'worker: parse, dedupe, enrich (cached), moderate':<46} {worker_rate:>10,.0f} {worker['seconds']:>8.2f}")
    print(f"worker: {worker['duplicates']:,.0f} duplicates dropped, {worker['hits']:,.0f} moderation hits, "
          f"{worker['not_enriched']:,.0f} not enriched, {worker['batches']:,.0f} batches; processing batches took "
          f"{worker['busy_seconds']:.2f}s of the {worker['seconds']:.2f}s (the rest: waiting for faust to deliver)")
    ratio = worker_rate / pass_rate
    print(f"faust's own ceiling is {bare_rate / pass_rate:.2f} of the passthrough; the worker reaches "
          f"{worker_rate / bare_rate:.2f} of that ceiling")
    print(f"ratio worker/passthrough: {ratio:.2f} (target >= 0.50: {'met' if ratio >= 0.5 else 'MISSED'}); "
          f">= 10,000/s: {'met' if worker_rate >= 10_000 else 'MISSED'}")


if __name__ == "__main__":
    main()
