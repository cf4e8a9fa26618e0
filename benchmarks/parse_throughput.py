"""Callbacks parsed and normalized per second on one core, against plain orjson.loads of the same bodies.

    .venv/bin/python benchmarks/parse_throughput.py [--count 50000] [--seed 1]

The bodies are the simulator's (real type mix, no malformed ones). Each figure is the best of several
rounds, so a busy moment on the machine does not decide it. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eyun.traffic import TrafficConfig, TrafficGenerator
from schemas.message import parse_message

from timing import best_seconds, pin_to_one_core  # noqa: E402


def best_rate(fn: Callable[[bytes], object], bodies: list[bytes], rounds: int) -> float:
    def run() -> None:
        for body in bodies:
            fn(body)

    return len(bodies) / best_seconds(run, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pin_to_one_core()
    bodies = TrafficGenerator(TrafficConfig(count=args.count, seed=args.seed, duplicate_rate=0, malformed_rate=0)).bodies()
    xml = [b for b in bodies if b'"content":"<' in b or b'\\n<' in b]
    plain = [b for b in bodies if b not in set(xml)]
    megabytes = sum(map(len, bodies)) / 1e6
    print(f"{len(bodies)} callbacks, {megabytes:.1f} MB ({len(xml)} with XML content), one core, best of {args.rounds}")
    rows = []
    for label, sample in (("all", bodies), ("text and events", plain), ("XML content", xml)):
        baseline = best_rate(orjson.loads, sample, args.rounds)
        ours = best_rate(parse_message, sample, args.rounds)
        rows.append((label, baseline, ours))
    print(f"{'bodies':<16} {'orjson.loads/s':>15} {'parse+normalize/s':>18} {'ratio':>7}")
    for label, baseline, ours in rows:
        print(f"{label:<16} {baseline:>15,.0f} {ours:>18,.0f} {ours / baseline:>7.2f}")


if __name__ == "__main__":
    main()
