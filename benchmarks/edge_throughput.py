"""Edge throughput and latency with real Kafka acknowledgements, against the same server answering without Kafka.

    .venv/bin/python benchmarks/edge_throughput.py [--seconds 15] [--latency-seconds 60]

Needs wrk (apt-get install wrk) and Go (to build benchmarks/loadgen). The edge process is pinned to core 0;
the broker and the load generators share core 1. Two runs of the same edge app, differing only in the
hand-off: "bare" acknowledges at once, "kafka" waits for acks=all from a real local broker; a third run,
"stock", is "bare" served by uvicorn's stock httptools protocol as the edge was before its limits (issue 11),
so that what the limits cost is measured in the same run. Each run:
closed loop at 64 connections (wrk) for the maximum rate, then an open loop at half the Kafka run's rate
(the Go load generator, latency measured from each request's scheduled time) for p50/p99. Targets
(issue 4): Kafka run at least 8,000 callbacks/s and 60% of bare; p99 at most 25 ms at half load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import start_pinned_broker  # noqa: E402
from eyun.traffic import TrafficConfig, TrafficGenerator  # noqa: E402
from wxarchive.config import Settings  # noqa: E402
from wxarchive.net import free_ports  # noqa: E402

WRK_SCRIPT = """
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def serve(mode: str, port: int, bootstrap: str, data_dir: str) -> None:
    """Run one edge (this script re-invoked under taskset). "bare" and "stock" acknowledge without Kafka;
    "stock" serves on uvicorn's own httptools protocol with its defaults, the edge's configuration before
    ingest/protocol.py."""
    import dataclasses

    import uvicorn

    from ingest.handoff import Delivery, KafkaHandoff
    from ingest.records import OutRecord
    from ingest.server import build_app, server_config

    class AckAtOnce(KafkaHandoff):
        async def start(self) -> None:
            self.kafka_up = True

        async def stop(self) -> None:
            pass

        async def deliver(self, record: OutRecord) -> Delivery:
            return Delivery.ACKED

    settings = dataclasses.replace(
        Settings.load(env={"WXARCHIVE_DATA_DIR": data_dir, "WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap}),
        edge_port=port, edge_secret="bench", edge_id=f"bench-{mode}")
    app = build_app(settings)
    if mode in ("bare", "stock"):
        app.handoff = AckAtOnce(settings, app.metrics)
    config = server_config(app, settings)
    if mode == "stock":
        config = uvicorn.Config(app, host=config.host, port=config.port, loop="uvloop", http="httptools",
                                lifespan="on", access_log=False, log_level="warning", server_header=False,
                                date_header=False)
    uvicorn.Server(config).run()


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} never became ready")


def wrk(url: str, bodies: Path, seconds: int, script: Path) -> dict[str, float]:
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", "-s", str(script),
                          url, "--", str(bodies)], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = float(non_2xx.group(1)) if non_2xx else 0.0
    return {"rate": rate, "p50_ms": ms("50"), "p99_ms": ms("99"), "non_2xx": errors, "ok": total - errors}


def loadgen(binary: Path, url: str, bodies: Path, rate: float, seconds: int) -> dict[str, float]:
    out = subprocess.run(["taskset", "-c", "1", str(binary), "-url", url, "-bodies", str(bodies), "-rate", f"{rate:.0f}",
                          "-d", f"{seconds}s"], capture_output=True, text=True, check=True,
                         env={**os.environ, "GOMAXPROCS": "1"}).stdout
    return json.loads(out)


def raw_records(bootstrap: str) -> int:
    import asyncio

    from wxarchive.kafka_clients import read_to_end

    return len(asyncio.run(read_to_end(bootstrap, "wxarchive.raw", timeout=120)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="closed-loop run length")
    parser.add_argument("--latency-seconds", type=int, default=60, help="open-loop run length at half load")
    parser.add_argument("--serve", choices=["stock", "bare", "kafka"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.bootstrap, args.data_dir)
        return
    for tool in ("wrk", "go", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install {'wrk' if tool == 'wrk' else 'golang' if tool == 'go' else 'util-linux'}")
    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    binary = ROOT / "benchmarks" / ".bin" / "loadgen"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=ROOT / "benchmarks" / "loadgen", check=True)
    script = work / "bodies.lua"
    script.write_text(WRK_SCRIPT)
    bodies = work / "bodies.jsonl"
    generated = TrafficGenerator(TrafficConfig(count=20_000, seed=7, duplicate_rate=0, malformed_rate=0)).bodies()
    bodies.write_bytes(b"\n".join(generated) + b"\n")
    mean_size = sum(map(len, generated)) / len(generated)

    broker = start_pinned_broker(work / "kafka")
    results: dict[str, dict[str, float]] = {}
    try:
        for mode in ("stock", "bare", "kafka"):
            (port,) = free_ports(1)
            edge = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--serve", mode, "--port", str(port),
                                     "--bootstrap", broker.spec.bootstrap, "--data-dir", str(work / "var")],
                                    stdout=subprocess.DEVNULL)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_ready(f"{base}/readyz")
                url = f"{base}/callback/bench"
                warm = wrk(url, bodies, 3, script)
                print(f"{mode}: closed loop, 64 connections, {args.seconds}s", file=sys.stderr, flush=True)
                results[mode] = wrk(url, bodies, args.seconds, script)
                results[mode]["ok"] += warm["ok"]
                if mode == "kafka":
                    half = results["kafka"]["rate"] / 2
                    print(f"{mode}: open loop at {half:,.0f}/s, {args.latency_seconds}s", file=sys.stderr, flush=True)
                    results["kafka@half"] = {**loadgen(binary, url, bodies, half, args.latency_seconds), "target": half}
            finally:
                edge.terminate()
                edge.wait(timeout=30)
        print("counting records in wxarchive.raw", file=sys.stderr, flush=True)
        stored = raw_records(broker.spec.bootstrap)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    stock, bare, kafka, half = results["stock"], results["bare"], results["kafka"], results["kafka@half"]
    print(f"edge on one core (cpu 0); broker and load generators on cpu 1; bodies {mean_size:.0f} B on average")
    print(f"{'run':<34} {'callbacks/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    print(f"{'bare on stock uvicorn (no limits)':<34} {stock['rate']:>12,.0f} {stock['p50_ms']:>8.2f} {stock['p99_ms']:>8.2f} {stock['non_2xx']:>8.0f}")
    print(f"{'bare (no Kafka), 64 connections':<34} {bare['rate']:>12,.0f} {bare['p50_ms']:>8.2f} {bare['p99_ms']:>8.2f} {bare['non_2xx']:>8.0f}")
    print(f"{'Kafka acks=all, 64 connections':<34} {kafka['rate']:>12,.0f} {kafka['p50_ms']:>8.2f} {kafka['p99_ms']:>8.2f} {kafka['non_2xx']:>8.0f}")
    non_200 = sum(v for k, v in half["status"].items() if k != "200")  # type: ignore[union-attr]
    print(f"{'Kafka, open loop at half rate':<34} {half['rate']:>12,.0f} {half['p50_ms']:>8.2f} {half['p99_ms']:>8.2f} {non_200:>8.0f}")
    ratio = kafka["rate"] / bare["rate"]
    print(f"the edge's limits: bare {bare['rate'] / stock['rate']:.2f} of stock uvicorn's rate")
    acknowledged = int(kafka["ok"] + half["status"].get("200", 0))  # type: ignore[union-attr]
    # wrk stops on a deadline with up to 64 requests in flight per run: written to Kafka, their 200 never counted
    in_flight = stored - acknowledged
    verdict = "every 200 is in Kafka" if 0 <= in_flight <= 2 * 64 else "MISMATCH: acknowledged callbacks are missing"
    print(f"ratio Kafka/bare: {ratio:.2f}; answered 200 with Kafka: {acknowledged:,}; records in wxarchive.raw: {stored:,}"
          f" ({verdict}; {in_flight} more were in flight when wrk stopped)")
    print(f"targets: >= 8,000/s {'met' if kafka['rate'] >= 8000 else 'MISSED'}; >= 60% of bare "
          f"{'met' if ratio >= 0.6 else 'MISSED'}; p99 <= 25 ms at half load {'met' if half['p99_ms'] <= 25 else 'MISSED'}")


if __name__ == "__main__":
    main()
