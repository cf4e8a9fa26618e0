"""The traffic simulator: reproducible to the byte, and its summary is the truth about its output."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from eyun.delivery import Progress, post_all
from eyun.directory import Directory
from eyun.traffic import EVASIONS, TrafficConfig, TrafficGenerator
from schemas.callback import PayloadError
from schemas.message import parse_message
from wxarchive.http_server import serve_app

ROOT = Path(__file__).parents[2]


def _simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "commands", "simulate", *args], capture_output=True, text=True, cwd=ROOT)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        done = _simulate("--count", "10000", "--seed", seed, "--out", str(tmp_path / f"{name}.jsonl"),
                         "--summary", str(tmp_path / f"{name}.json"))
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    assert "unique messages" in done.stdout


def test_summary_matches_the_file(tmp_path: Path) -> None:
    out, summary_file = tmp_path / "traffic.jsonl", tmp_path / "truth.json"
    done = _simulate("--count", "10000", "--seed", "1", "--duplicates", "0.2", "--out", str(out), "--summary", str(summary_file))
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(summary_file.read_bytes())
    lines = out.read_bytes().split(b"\n")[:-1]
    seen: dict[str, str] = {}
    malformed = duplicates = 0
    kinds: Counter[str] = Counter()
    new_msg_ids: set[int] = set()
    recalls: list[int] = []
    quotes: list[int] = []
    w_ids: dict[str, set[str]] = {}
    for line in lines:
        try:
            m = parse_message(line)
        except PayloadError:
            malformed += 1
            continue
        if m.dedupe_key in seen:
            duplicates += 1
            w_ids.setdefault(m.dedupe_key, {seen[m.dedupe_key]}).add(m.w_id)
            continue
        seen[m.dedupe_key] = m.w_id
        kinds[m.kind] += 1
        if m.new_msg_id is not None:
            new_msg_ids.add(m.new_msg_id)
        if m.recalled_new_msg_id:
            recalls.append(m.recalled_new_msg_id)
        if m.quoted_new_msg_id:
            quotes.append(m.quoted_new_msg_id)
    assert len(lines) == summary["sent"] == 10000
    assert malformed == summary["malformed"] == 100
    assert duplicates == summary["duplicates"] == 2000
    assert kinds["message"] == summary["expected_unique_messages"]
    assert sum(kinds.values()) - kinds["message"] == summary["expected_unique_events"]
    assert dict(kinds) == summary["by_kind"]
    assert len(recalls) == summary["expected_recalls"] > 0 and set(recalls) <= new_msg_ids  # recalls hit real messages
    assert quotes and set(quotes) <= new_msg_ids
    assert any(len(ids) > 1 for ids in w_ids.values())  # some history came back under a new wId
    assert sum(summary["malformed_by_reason"].values()) == 100


def test_the_stream_looks_like_real_traffic() -> None:
    generator = TrafficGenerator(TrafficConfig(count=20000, seed=3, sensitive_rate=0.05))
    bodies = generator.bodies()
    messages = []
    for body in bodies:
        with contextlib.suppress(PayloadError):
            messages.append(parse_message(body))
    chat = [m for m in messages if m.kind == "message"]
    assert 0.5 < sum(m.is_group for m in chat) / len(chat) < 0.7
    assert 0.55 < sum(m.type_name == "text" for m in chat) / len(chat) < 0.7
    assert len({m.type_code for m in chat}) >= 30  # the rare types show up too
    times = [m.time_ms for m in messages if m.time_ms]
    assert any(b < a for a, b in zip(times, times[1:]))  # out of order
    assert any(m.new_msg_id and m.new_msg_id >= 2**63 for m in chat)  # ids beyond the signed range
    assert any("\u2005" in m.text for m in chat) and any(m.at_list for m in chat)
    assert set(generator.summary.sensitive_by_evasion) == set(EVASIONS)
    directory = Directory.generate(seed=3, accounts=3)
    known = {a.w_id for a in directory.accounts} | {a.relogin_w_id for a in directory.accounts}
    assert {m.w_id for m in messages if m.w_id} <= known  # every wId is one the fake E云 accepts


@pytest.mark.parametrize(("args", "message"), [
    (["--duplicates", "1.5"], "duplicate_rate must be between 0 and 1"),
    (["--duplicates", "0.6", "--malformed", "0.5"], "leave no room for unique messages"),
    (["--start", "yesterday"], "Invalid isoformat string"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = _simulate("--out", str(tmp_path / "x.jsonl"), *args)
    assert done.returncode == 2
    assert done.stderr.startswith("wxarchive: error: simulate: ") and message in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_needs_exactly_one_target() -> None:
    done = _simulate("--count", "5")
    assert done.returncode == 2 and "one of the arguments --out --url is required" in done.stderr


def test_posting_re_pushes_what_the_edge_did_not_accept() -> None:
    received: list[bytes] = []
    refusals = {"left": 5}

    async def edge(request: web.Request) -> web.Response:
        body = await request.read()
        if refusals["left"] > 0:
            refusals["left"] -= 1
            return web.json_response({"error": "kafka unavailable"}, status=503)
        received.append(body)
        return web.json_response({"code": "1000"}, status=200 if body.startswith(b"{") else 400)

    async def scenario() -> Counter[str]:
        app = web.Application()
        app.router.add_post("/callback", edge)
        runner, url = await serve_app(app)
        try:
            bodies = TrafficGenerator(TrafficConfig(count=300, seed=5, malformed_rate=0.05)).bodies()
            outcomes = await post_all(bodies, f"{url}/callback", concurrency=8, rate=2000,
                                      progress=Progress(len(bodies), stream=io.StringIO()))
            assert sorted(received) == sorted(bodies)  # every body arrived, the refused ones again
            return outcomes
        finally:
            await runner.cleanup()

    outcomes = asyncio.run(scenario())
    assert sum(outcomes.values()) == 300 and "503" not in outcomes and outcomes["400"] > 0
