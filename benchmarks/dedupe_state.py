"""Dedupe state: bytes per tracked identity, and process RSS with 10 million identities tracked.

    .venv/bin/python benchmarks/dedupe_state.py [--ids 10000000]

Each store is filled in its own process with what the worker's dedupe table holds: keys as faust
serializes them (JSON strings "wxid_…|newMsgId", about 40 bytes) and values [first seen ms, partition].
- rocksdb: a database opened with faust's own RocksDBOptions (rocksdict), the worker's production store;
  written in batches as faust's store writes, then flushed and compacted. Bytes per id is disk size / ids.
- memory: faust's in-memory store is a dict of the same keys and values, the baseline in the same run;
  bytes per id is the RSS it adds / ids.
RSS is VmRSS of the filling process after the fill (the worker's own code and faust add about 100 MB more).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def identities(count: int) -> Iterator[tuple[bytes, bytes]]:
    rng = random.Random(3)
    accounts = ["wxid_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=14)) for _ in range(20)]
    now = 1_795_000_000_000
    for i in range(count):
        key = json.dumps(f"{accounts[i % 20]}|{rng.getrandbits(64)}").encode()
        yield key, json.dumps([now + i, i % 4]).encode()


def fill_rocksdb(count: int, path: Path) -> dict[str, float]:
    from faust.stores.rocksdb import RocksDBOptions
    from rocksdict import WriteBatch

    before = rss_mb()
    db = RocksDBOptions().open(path)
    started = time.perf_counter()
    batch = WriteBatch(raw_mode=True)
    for n, (key, value) in enumerate(identities(count), 1):
        batch.put(key, value)
        if n % 10_000 == 0:
            db.write(batch)
            batch = WriteBatch(raw_mode=True)
    db.write(batch)
    db.flush()
    db.compact_range(None, None)
    seconds = time.perf_counter() - started
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    probe = next(identities(1))[0]
    assert db[probe] is not None  # the first identity is found again
    result = {"seconds": seconds, "rss_mb": rss_mb(), "rss_added_mb": rss_mb() - before, "disk_bytes": disk}
    db.close()
    return result


def fill_memory(count: int) -> dict[str, float]:
    before = rss_mb()
    started = time.perf_counter()
    store = dict(identities(count))
    return {"seconds": time.perf_counter() - started, "rss_mb": rss_mb(), "rss_added_mb": rss_mb() - before,
            "entries": len(store)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--child", choices=["rocksdb", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "rocksdb":
        print(json.dumps(fill_rocksdb(args.ids, Path(args.path))))
        return
    if args.child == "memory":
        print(json.dumps(fill_memory(args.ids)))
        return
    work = Path(tempfile.mkdtemp(prefix="dedupe-bench-"))
    try:
        results = {}
        for mode in ("rocksdb", "memory"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--ids", str(args.ids), "--path",
                                  str(work / "db")], capture_output=True, text=True, check=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rocks, memory = results["rocksdb"], results["memory"]
    n = args.ids
    print(f"{n:,} tracked identities (keys ~{len(next(identities(1))[0])} B as faust serializes them)")
    print(f"{'store':<34} {'bytes/id':>9} {'RSS MB':>8} {'fill s':>7}")
    print(f"{'rocksdb (rocksdict, faust options)':<34} {rocks['disk_bytes'] / n:>9.1f} {rocks['rss_mb']:>8.0f} "
          f"{rocks['seconds']:>7.1f}   (bytes/id on disk)")
    print(f"{'memory (dict, the baseline)':<34} {memory['rss_added_mb'] * 1048576 / n:>9.1f} {memory['rss_mb']:>8.0f} "
          f"{memory['seconds']:>7.1f}   (bytes/id of RSS)")
    print(f"RSS with rocksdb is {rocks['rss_mb'] / memory['rss_mb']:.2f} of the in-memory store's")
    os.sync()


if __name__ == "__main__":
    main()
