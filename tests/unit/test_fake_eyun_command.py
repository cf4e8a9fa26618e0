"""`wxarchive fake-eyun` as a user runs it: it listens, answers like E云, and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from eyun.client import EyunClient
from eyun.directory import Directory
from eyun.fake_server import DEFAULT_TOKEN
from wxarchive.net import free_ports

ROOT = Path(__file__).parents[2]


def test_serves_the_seeded_directory_and_stops_on_ctrl_c() -> None:
    (port,) = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-m", "commands", "fake-eyun", "--port", str(port), "--seed", "4",
                             "--accounts", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "WXARCHIVE_EYUN_TOKEN": "t0ken"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"fake E云 listening on http://127.0.0.1:{port}")
        directory = Directory.generate(seed=4, accounts=2)

        async def ask() -> list[str]:
            async with EyunClient(f"http://127.0.0.1:{port}", "t0ken") as client:
                return [x.wcId for x in await client.query_login_wx()]

        assert asyncio.run(ask()) == [a.wc_id for a in directory.accounts]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "commands", "fake-eyun", "--port", str(port)],
                              capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 1
    assert done.stderr.startswith(f"wxarchive: error: cannot listen on 127.0.0.1:{port}: ")
    assert "already in use" in done.stderr.lower() and len(done.stderr.strip().splitlines()) == 1
    assert DEFAULT_TOKEN not in done.stderr
