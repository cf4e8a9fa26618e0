"""Chaos soak: the chaos suite's run (tests/chaos_harness.py), longer and at a chosen pace.

    .venv/bin/python benchmarks/chaos_soak.py [--rounds 3] [--rate 200] [--count N] [--faults worker,sink,edge,broker,disk]

The whole write path as real processes (a broker of its own, the fake E云, `wxarchive edge --spool`, `worker`
and `sink`), the simulator's callbacks posted at `--rate` and re-posted as E云 does, and every fault in turn,
`--rounds` times: kill -9 of the worker, the sink, the edge and the broker (each restarted after a moment), and
the spool's disk filled and freed during a broker outage. Prints the timeline as it goes, then the report
table (per fault: lost, duplicated, kept as dead letters, time until callbacks get 200 again and until the
archive caught up) and the checks. Exits 1 if any check failed (a loss, a duplicate, a refused body not kept,
an archive that did not catch up, a part that died on its own), 0 otherwise. The run's directory (logs of
every part, the broker's data, the archive) is kept when a check failed or with --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos_harness import FAULTS, ChaosConfig, run_chaos  # noqa: E402
from wxarchive.logs import configure  # noqa: E402

# seconds one round of the five faults took at the default bounds (docs/chaos.md), plus the start: the default
# count keeps the load going that long, so no fault meets an idle edge; what is left is posted unpaced at the end
ROUND_S = 100.0
START_S = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="times each fault is injected (default 3)")
    parser.add_argument("--rate", type=float, default=200.0, help="first posts per second (default 200)")
    parser.add_argument("--count", type=int, default=0,
                        help="simulated callbacks (default: enough to keep the rate up through every round)")
    parser.add_argument("--seed", type=int, default=ChaosConfig.seed, help="the simulator's seed")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated, in order, from {', '.join(FAULTS)} (default: all)")
    parser.add_argument("--workdir", type=Path, help="where the run's processes keep their data and logs "
                        "(default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory even when every check passed")
    args = parser.parse_args(argv)
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown or not faults:
        parser.error(f"--faults: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(FAULTS)}")
    if args.rounds < 1 or args.rate <= 0:
        parser.error("--rounds must be at least 1 and --rate above 0")
    args.faults = faults
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    per_round = ROUND_S * len(args.faults) / len(FAULTS)
    count = args.count or int(args.rate * (START_S + per_round * args.rounds))
    config = ChaosConfig(count=count, rate=args.rate, seed=args.seed, rounds=args.rounds, faults=args.faults)
    configure("warning")  # the harness's own Kafka clients meet a dead broker: its repeats pass once per 30 s
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wxarchive-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"chaos soak in {workdir}: {count:,} callbacks at {args.rate:g}/s, {args.rounds} round(s) of "
          f"{', '.join(args.faults)} ({time.strftime('%Y-%m-%d %H:%M')})", flush=True)
    report = asyncio.run(run_chaos(config, workdir, say=lambda line: print(line, flush=True)))
    print()
    print(report.render())
    report.save(workdir)
    if report.failures or args.keep:
        print(f"\nthe run's logs, data and report are in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
