"""What the edge's server protocol (ingest/protocol.py) and its app cost per request, against stock uvicorn and
against another checkout, measured without sockets: CPU microseconds per request, best of interleaved rounds.

    .venv/bin/python benchmarks/edge_protocol_cost.py [--requests 20000] [--rounds 7] [--tree PATH]
    .venv/bin/python benchmarks/edge_protocol_cost.py --profile edge

On a machine shared with other work a throughput run moves by more than the few percent in question here
(benchmarks/edge_throughput.py measures rates, p99 and CPU per callback end to end). Here the servers' protocol
objects are driven directly: 64 connections on an in-memory transport, one request each, then the event loop
runs until all 64 are answered, again and again. No kernel, no load generator: what is left is the server's
and the app's Python work, so the best round of each is a stable figure. Each measurement runs in a fresh
process, all interleaved (the order reversed every other round). Servers:

  stock           uvicorn's own httptools protocol as the edge was served before its limits (the previous
                  server_config: proxy headers from loopback believed, so uvicorn's ProxyHeadersMiddleware runs)
  stock, no proxy the same without the proxy-headers middleware (what the edge's server_config also drops)
  edge            the edge's guarded protocol and server_config, every limit at its default
  tree            with --tree PATH: that checkout's edge app on that checkout's own server_config

Apps: the edge app acknowledging at once (no Kafka; the "bare" edge of edge_throughput.py) and a trivial one
(read the body, parse the JSON, answer: the app of benchmarks/server_stacks.py), which leaves the protocol's
cost undiluted. Requests: the 20,000 simulated callbacks edge_throughput.py posts, with wrk's headers.
`--profile SERVER` runs that server's edge app under cProfile and prints the functions that cost most.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import json
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 64
SERVERS = ("stock", "stock, no proxy", "edge")


class MemoryTransport(asyncio.Transport):
    """A connection's transport that keeps nothing: what the server writes is counted and dropped."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.peer = ("127.0.0.1", 40000 + n)
        self.closing = False
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": self.peer}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True


def requests() -> list[bytes]:
    from eyun.traffic import TrafficConfig, TrafficGenerator

    bodies = TrafficGenerator(TrafficConfig(count=20_000, seed=7, duplicate_rate=0, malformed_rate=0)).bodies()
    return [b"POST /callback/bench HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body) for body in bodies]


def protocol_factory(server: str, app_name: str) -> Callable[[], Any]:
    """Protocols as uvicorn would build them for `server`, serving the edge app ("edge") or the trivial one. The
    project's modules come from whichever checkout is first on sys.path (see worker)."""
    import uvicorn
    from bare_edge import acknowledge_at_once
    from uvicorn.server import ServerState

    from ingest.server import build_app, server_config
    from wxarchive.config import Settings

    settings = dataclasses.replace(Settings.load(env={}), edge_secret="bench", edge_id="bench")
    app: Any = build_app(settings)
    acknowledge_at_once(app, settings)
    if app_name == "trivial":
        from server_stacks import asgi

        app = asgi
    if server in ("edge", "tree"):
        own = server_config(build_app(settings), settings)
        config = uvicorn.Config(app, **{k: getattr(own, k) for k in (
            "host", "port", "loop", "http", "ws", "lifespan", "access_log", "log_level", "server_header",
            "date_header", "timeout_keep_alive", "proxy_headers", "forwarded_allow_ips")})
    else:  # the previous server_config (git show 67eea71^:ingest/server.py), proxy headers as uvicorn defaults them
        config = uvicorn.Config(app, host="127.0.0.1", port=8080, loop="uvloop", http="httptools", lifespan="on",
                                access_log=False, log_level="warning", server_header=False, date_header=False,
                                proxy_headers=server == "stock")
    config.load()
    state = ServerState()
    protocol_class = config.http_protocol_class
    return lambda: protocol_class(config=config, server_state=state, app_state={})


async def drive(factory: Callable[[], Any], payloads: list[bytes], count: int) -> float:
    """CPU seconds to answer `count` requests over CONNECTIONS connections (each connection one at a time)."""
    conns = []
    for n in range(CONNECTIONS):
        protocol = factory()
        protocol.connection_made(MemoryTransport(n))
        conns.append(protocol)
    sent = 0
    started = time.process_time()
    while sent < count:
        for protocol in conns:
            protocol.data_received(payloads[sent % len(payloads)])
            sent += 1
        while not all(p.cycle is not None and p.cycle.response_complete for p in conns):
            await asyncio.sleep(0)
    spent = time.process_time() - started
    for protocol in conns:
        protocol.transport.close()
        protocol.connection_lost(None)
    return spent


def measure(factory: Callable[[], Any], payloads: list[bytes], count: int) -> float:
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(drive(factory, payloads, CONNECTIONS * 10))  # warm-up
        return loop.run_until_complete(drive(factory, payloads, count))
    finally:
        loop.close()


def worker(server: str, app_name: str, count: int, tree: str | None) -> None:
    """One measurement in this process, printed as microseconds per request."""
    sys.path[:0] = [tree or str(ROOT), str(ROOT / "benchmarks")]
    payloads = requests()
    seconds = measure(protocol_factory(server, app_name), payloads, count)
    print(json.dumps(seconds / count * 1e6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tree", help="another checkout whose edge app, on its own server_config, is measured too")
    parser.add_argument("--profile", choices=SERVERS)
    parser.add_argument("--worker", nargs=2, metavar=("SERVER", "APP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.requests, args.tree)
        return
    if args.profile:
        sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
        factory = protocol_factory(args.profile, "edge")
        payloads = requests()
        profiler = cProfile.Profile()
        profiler.enable()
        measure(factory, payloads, args.requests)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    servers = SERVERS + (("tree",) if args.tree else ())
    results: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.rounds):
        for app_name in ("edge", "trivial"):
            for server in servers if round_no % 2 == 0 else servers[::-1]:
                command = [sys.executable, __file__, "--worker", server, app_name, "--requests", str(args.requests)]
                if server == "tree":
                    command += ["--tree", args.tree]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                results.setdefault((app_name, server), []).append(float(out.strip().splitlines()[-1]))
    print(f"CPU microseconds per request, {CONNECTIONS} in-memory connections, {args.requests:,} requests per "
          f"measurement, best (and median) of {args.rounds} interleaved rounds" + (f"; tree: {args.tree}" if args.tree else ""))
    print(f"{'app':<8} {'server':<16} {'best':>7} {'median':>7} {'stock/this (best)':>18} {'stock/this (median)':>20}")
    for app_name in ("edge", "trivial"):
        base = results[(app_name, "stock")]
        for server in servers:
            us = results[(app_name, server)]
            print(f"{app_name:<8} {server:<16} {min(us):>7.2f} {statistics.median(us):>7.2f} "
                  f"{min(base) / min(us):>18.3f} {statistics.median(base) / statistics.median(us):>20.3f}")
    print("stock/this: stock's CPU per request over this server's, the rate this server would reach as a share of "
          "stock's where the request's CPU is all there is (one core, saturated)")


if __name__ == "__main__":
    main()
