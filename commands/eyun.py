"""`wxarchive simulate` and `wxarchive fake-eyun`: the E云 side, simulated, for local use and tests."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from commands.common import Subcommands, leaf, non_negative_int
from wxarchive.config import Settings
from wxarchive.errors import ConfigError, PrerequisiteError


def register(commands: Subcommands) -> None:
    sim = leaf(commands, "simulate", _cmd_simulate, help="generate realistic E云 callback traffic into a file or at an edge",
        description="Generate callbacks as E云 sends them: several accounts, private and group chats, the type mix "
                    "of real chats, re-pushed duplicates (some long after, some under a new wId), out-of-order "
                    "delivery, sensitive words in evasive spellings and malformed bodies. The same --seed gives "
                    "the same bytes. Ends with a summary of what an archive must contain.",
        epilog="examples:\n  wxarchive simulate --count 10000 --seed 1 --out traffic.jsonl --summary truth.json\n"
               "  wxarchive simulate --count 5000 --rate 500 --url http://127.0.0.1:8080/callback/SECRET")
    target = sim.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="FILE", help="write one callback body per line (JSONL)")
    target.add_argument("--url", help="POST each callback to this edge URL")
    sim.add_argument("--count", type=non_negative_int, default=1000, help="callbacks to send, all kinds (default 1000)")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same traffic, byte for byte (default 1)")
    sim.add_argument("--accounts", type=int, default=3, help="archived WeChat accounts (default 3)")
    sim.add_argument("--duplicates", type=float, default=0.1, metavar="SHARE", help="share of re-pushed duplicates (default 0.1)")
    sim.add_argument("--malformed", type=float, default=0.01, metavar="SHARE", help="share of malformed bodies (default 0.01)")
    sim.add_argument("--sensitive", type=float, default=0.03, metavar="SHARE", help="share of texts with a sensitive word (default 0.03)")
    sim.add_argument("--events", type=float, default=0.03, metavar="SHARE", help="share of group/friend/account events (default 0.03)")
    sim.add_argument("--start", default=None, help="time of the first message, ISO 8601 (default 2026-11-01T09:00:00+08:00)")
    sim.add_argument("--rate", type=float, default=0.0, help="with --url: callbacks per second (default: as fast as possible)")
    sim.add_argument("--concurrency", type=int, default=16, help="with --url: requests in flight (default 16)")
    sim.add_argument("--summary", type=Path, metavar="FILE", help="also write the summary as JSON")
    sim.add_argument("--quiet", action="store_true", help="no progress display")

    fake = leaf(commands, "fake-eyun", _cmd_fake_eyun,
                help="run a fake E云 API (getContact, sendText, address list, chat rooms) for local use and tests",
        description="Serve the E云 endpoints the archive uses, with the documents' response shapes, from a generated "
                    "directory of accounts, friends and groups (the same --seed and --accounts as `simulate` give "
                    "the same people). Knobs inject failures, latency and timeouts; GET /_fake/calls lists every "
                    "call, POST /_fake/knobs changes knobs while running.")
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fake.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    fake.add_argument("--seed", type=int, default=1, help="directory seed, as for simulate (default 1)")
    fake.add_argument("--accounts", type=int, default=3, help="accounts in the directory (default 3)")
    fake.add_argument("--failure-rate", type=float, default=0.0, help="share of calls answered code 1001")
    fake.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    fake.add_argument("--jitter-ms", type=float, default=0.0, help="plus up to this much at random")
    fake.add_argument("--timeout-rate", type=float, default=0.0, help="share of calls that hang for 30 s")
    fake.add_argument("--enforce-pacing", action="store_true", help="answer 1001 to getContact calls under 300 ms apart")


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from eyun.delivery import Progress, post_all, write_jsonl
    from eyun.traffic import DEFAULT_START, TrafficConfig, TrafficGenerator

    try:
        config = TrafficConfig(count=args.count, seed=args.seed, accounts=args.accounts, duplicate_rate=args.duplicates,
                               malformed_rate=args.malformed, sensitive_rate=args.sensitive, event_rate=args.events,
                               start=args.start or DEFAULT_START)
        generator = TrafficGenerator(config)
    except ValueError as exc:
        raise ConfigError(f"simulate: {exc}") from None
    bodies = generator.bodies()
    progress = Progress(len(bodies), quiet=args.quiet)
    if args.out is not None:
        write_jsonl(bodies, args.out, progress)
    else:
        generator.summary.http.update(asyncio.run(post_all(bodies, args.url, concurrency=args.concurrency,
                                                           rate=args.rate, progress=progress)))
    print(generator.summary.to_text())
    if args.summary is not None:
        args.summary.write_bytes(generator.summary.to_json())
    failed = generator.summary.http.get("error", 0) + sum(v for k, v in generator.summary.http.items() if k.startswith("5"))
    return 1 if failed else 0


def _cmd_fake_eyun(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from eyun.directory import Directory
    from eyun.fake_server import DEFAULT_TOKEN, FakeEyun, Knobs, serve

    knobs = Knobs(failure_rate=args.failure_rate, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
                  timeout_rate=args.timeout_rate, enforce_pacing=args.enforce_pacing)
    fake = FakeEyun(Directory.generate(seed=args.seed, accounts=args.accounts), token=settings.eyun_token or DEFAULT_TOKEN,
                    knobs=knobs, seed=args.seed)

    async def run() -> None:
        try:
            runner, url = await serve(fake, args.host, args.port)
        except OSError as exc:
            raise PrerequisiteError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        accounts = ", ".join(f"{a.wc_id} (wId {a.w_id})" for a in fake.directory.accounts)
        print(f"fake E云 listening on {url}; accounts: {accounts}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        asyncio.run(run())
    return 0
