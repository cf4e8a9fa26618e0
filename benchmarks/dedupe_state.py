"""Dedupe state: bytes per tracked identity, and process RSS with 10 million identities tracked.

    .venv/bin/python benchmarks/dedupe_state.py [--ids 10000000]

Each store is filled in its own process through the worker's own classes (streams.dedupe_state), in
batches of 1,000 identities as `remember` writes them: keys "wxid_…|newMsgId" (about 40 bytes) with the
batch's first-seen time.
- rocksdb: RocksStore, the worker's production store (rocksdict); then flushed and compacted. Bytes per id
  is its disk size / ids.
- memory: MemoryStore (a dict), the baseline in the same run; bytes per id is the RSS it adds / ids.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def identity_batches(count: int, size: int = 1000) -> Iterator[tuple[list[bytes], int]]:
    rng = random.Random(3)
    accounts = ["wxid_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=14)) for _ in range(20)]
    now = 1_795_000_000_000
    for start in range(0, count, size):
        yield [f"{accounts[i % 20]}|{rng.getrandbits(64)}".encode() for i in range(start, min(count, start + size))], now + start


def fill(kind: str, count: int, path: Path) -> dict[str, float]:
    from streams.dedupe_state import MemoryStore, RocksStore

    before = rss_mb()
    store = RocksStore(path) if kind == "rocksdb" else MemoryStore()
    started = time.perf_counter()
    for offset, (keys, first_seen) in enumerate(identity_batches(count)):
        store.put_many(keys, first_seen)
        store.mark_applied(offset)
    result = {"seconds": time.perf_counter() - started}
    seen = [k for keys, _ in identity_batches(min(count, 100_000)) for k in keys]
    unseen = [k + b"x" for k in seen]
    started = time.perf_counter()
    assert all(store.get(k) is not None for k in seen)  # every identity is found again
    result["hit_us"] = (time.perf_counter() - started) / len(seen) * 1e6
    started = time.perf_counter()
    assert not any(store.get(k) is not None for k in unseen)
    result["miss_us"] = (time.perf_counter() - started) / len(unseen) * 1e6
    if isinstance(store, RocksStore):
        store.db.flush()
        store.db.compact_range(None, None)
        result["disk_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    result.update(rss_mb=rss_mb(), rss_added_mb=rss_mb() - before)
    store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--child", choices=["rocksdb", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fill(args.child, args.ids, Path(args.path))))
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
    print(f"{n:,} tracked identities (keys ~{len(next(identity_batches(1))[0][0])} B)")
    print(f"{'store':<34} {'bytes/id':>9} {'RSS MB':>8} {'fill s':>7} {'get hit µs':>10} {'get miss µs':>11}")
    print(f"{'rocksdb (RocksStore, the worker)':<34} {rocks['disk_bytes'] / n:>9.1f} {rocks['rss_mb']:>8.0f} "
          f"{rocks['seconds']:>7.1f} {rocks['hit_us']:>10.2f} {rocks['miss_us']:>11.2f}   (bytes/id on disk)")
    print(f"{'memory (MemoryStore, baseline)':<34} {memory['rss_added_mb'] * 1048576 / n:>9.1f} {memory['rss_mb']:>8.0f} "
          f"{memory['seconds']:>7.1f} {memory['hit_us']:>10.2f} {memory['miss_us']:>11.2f}   (bytes/id of RSS)")
    print(f"RSS with rocksdb is {rocks['rss_mb'] / memory['rss_mb']:.2f} of the in-memory store's")
    os.sync()


if __name__ == "__main__":
    main()
