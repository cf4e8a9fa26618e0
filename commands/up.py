"""`wxarchive up`: the whole write path on this machine (commands/stack.py), optionally with the demo."""

from __future__ import annotations

import argparse

from commands.common import Subcommands, leaf, non_negative_int
from wxarchive.config import Settings


def register(commands: Subcommands) -> None:
    up = leaf(commands, "up", _cmd_up, help="run the archive on this machine (local broker, embedded ClickHouse)",
                             description="Start every part of the archive that is not already running, print where "
                                         "each one is and whether it is healthy, and keep running until Ctrl-C, "
                                         "which stops what this command started.")
    up.add_argument("--check", action="store_true", help="report health, stop what was started, and exit (0 = healthy)")
    up.add_argument("--demo", action="store_true",
                    help="also post simulated traffic to the edge, wait for the archive to catch up, print a report "
                         "read from ClickHouse, stop, and exit 0 only if the archive matches the simulator")
    up.add_argument("--count", type=non_negative_int, default=2000, help="callbacks the demo posts (default 2000)")
    up.add_argument("--seed", type=int,
                    help="seed of the demo's traffic and of the fake E云's directory (default: for a demo a new one "
                         "each run, printed, so a second demo on the same data is new traffic; else 1, as simulate)")


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal
    import time

    from commands.demo import run_demo, seed_keywords
    from commands.stack import Stack

    async def main() -> int:
        # without a demo the fake E云 knows the people of `wxarchive simulate`'s default seed, 1
        seed = args.seed if args.seed is not None else (int(time.time()) % 1_000_000 if args.demo else 1)
        stack = Stack(settings, directory_seed=seed)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            # the demo's words go on the list before the worker starts, since it reads the list first
            await stack.start(prepare=seed_keywords if args.demo else None)
            print("wxarchive is up:\n" + stack.report(), flush=True)
            if args.check:
                return 0 if stack.healthy else 1
            if args.demo:
                assert stack.sink is not None
                return 0 if await run_demo(stack.sink, stack.edge_url, args.count, seed,
                                           stack.directory_accounts) else 1
            print("Press Ctrl-C to stop.", flush=True)
            ended = await stack.wait(stop)
            if ended:
                print(f"stopping: {ended}", flush=True)
                return 1
            print("stopping…", flush=True)
            return 0
        finally:
            await stack.stop()

    return asyncio.run(main())
