"""Bare HTTP server stacks answering an E云 callback, the measurement behind the edge's choice of uvicorn.

    .venv/bin/pip install granian && .venv/bin/python benchmarks/server_stacks.py [--seconds 8]

Each stack serves the same trivial callback handler (read the body, parse the JSON, answer the small
success body) on core 0; wrk with 64 connections posts the seed document's callback from core 1. Needs wrk
(apt-get install wrk); granian is measured only if it is installed. Besides the rate, the server's CPU time
per request (from /proc): on a machine shared with other work the rate moves with the neighbours, the CPU
cost much less. `--rounds N` measures every stack N times, interleaved, and reports each stack's best round.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wxarchive.net import free_ports  # noqa: E402

OK = orjson.dumps({"code": "1000", "message": "success", "data": None})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(OK)).encode())]
BODY = ('{"account":"17200000000","data":{"content":"消息内容","fromGroup":"25411981800@chatroom",'
        '"fromUser":"wxid_ynu1tgjz156j22","memberCount":8,"msgId":1685074592,"atlist":["wxid_phyyedw9xap22"],'
        '"newMsgId":1497474118261484795,"self":false,"timestamp":1640772092,"toUser":"wxid_phyyedw9xap22",'
        '"wId":"12491ae9-62aa-4f7a-83e6-9db4e9f28e3c"},"messageType":"80001","wcId":"wxid_phyyedw9xap22"}')


async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "POST":
        orjson.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": OK})


async def rsgi(scope, proto):  # type: ignore[no-untyped-def]
    body = await proto()
    if scope.method == "POST":
        orjson.loads(body)
    proto.response_bytes(200, [("content-type", "application/json")], OK)


def serve_aiohttp(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        if request.method == "POST":
            orjson.loads(await request.read())
        return web.Response(body=OK, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/callback", handle)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_edge_protocol(port: int) -> None:
    """The bare app on the edge's own protocol (ingest/protocol.py: every limit at its default) and its uvicorn
    options (no proxy headers, no websockets): what the limits cost, against stock uvicorn in the same run."""
    import uvicorn

    from ingest.protocol import ConnectionGuard, EdgeLimits
    from wxarchive.config import Settings

    guard = ConnectionGuard(EdgeLimits.from_settings(Settings()))
    uvicorn.run(asgi, host="127.0.0.1", port=port, loop="uvloop", http=guard.protocol_class(), ws="none",
                proxy_headers=False, access_log=False, log_level="warning")


def stacks(port: int) -> dict[str, list[str]]:
    py, module = sys.executable, "benchmarks.server_stacks"
    out = {"uvicorn + bare ASGI (httptools, uvloop)": [py, "-m", "uvicorn", f"{module}:asgi", "--port", str(port),
           "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
           "the same on the edge's protocol (limits)": [py, __file__, "--serve-edge-protocol", str(port)],
           "aiohttp web app (uvloop)": [py, __file__, "--serve-aiohttp", str(port)]}
    if shutil.which("granian", path=str(Path(py).parent)):
        granian = str(Path(py).parent / "granian")
        common = ["--port", str(port), "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
                  "--no-access-log", "--log-level", "warning"]
        out["granian RSGI"] = [granian, "--interface", "rsgi", *common, f"{module}:rsgi"]
        out["granian ASGI"] = [granian, "--interface", "asgi", *common, f"{module}:asgi"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--serve-aiohttp", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-edge-protocol", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_aiohttp:
        serve_aiohttp(args.serve_aiohttp)
        return
    if args.serve_edge_protocol:
        serve_edge_protocol(args.serve_edge_protocol)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [[{BODY}]]\n")
    best: dict[str, tuple[float, str, str, float]] = {}
    for _ in range(args.rounds):
        for name, command in stacks(free_ports(1)[0]).items():
            result = measure(command, script, args.seconds)
            if name not in best or result[0] > best[name][0]:
                best[name] = result
    print(f"{'stack (one core, wrk 64 connections on the other)':<44} {'req/s':>9} {'p50':>8} {'p99':>8} {'CPU/req':>9}")
    for name, (rate, p50, p99, cpu_us) in best.items():
        print(f"{name:<44} {rate:>9,.0f} {p50:>8} {p99:>8} {cpu_us:>7.1f}us")


def measure(command: list[str], script: Path, seconds: int) -> tuple[float, str, str, float]:
    """One stack under wrk: requests/s, p50, p99, and the server's CPU microseconds per request."""
    port = command[command.index("--port") + 1] if "--port" in command else command[-1]
    server = subprocess.Popen(["taskset", "-c", "0", *command], cwd=Path(__file__).resolve().parents[1],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/callback", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        cpu_before = cpu_seconds(server.pid)
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", "-s",
                              str(script), f"http://127.0.0.1:{port}/callback"], capture_output=True, text=True).stdout
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50, p99 = (re.search(rf"^\s+{p}%\s+(\S+)", out, re.M) for p in ("50", "99"))
    return (float(rate.group(1)) if rate else 0.0, p50.group(1) if p50 else "-", p99.group(1) if p99 else "-",
            cpu / int(total.group(1)) * 1e6 if total else 0.0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
