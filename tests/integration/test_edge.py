"""The ingest edge against the real broker: durable hand-off, authentication, bad input, operations."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fixtures.callbacks import body, chat_callback
from tests.fixtures.seed import callback_example
from tests.support import edge_settings, read_topic, running_edge
from wxarchive.config import Settings
from wxarchive.errors import ConfigError
from wxarchive.topics import DLQ, RAW

JSON = {"Content-Type": "application/json"}


async def post(http: aiohttp.ClientSession, url: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    headers = JSON if headers is None else headers
    skip = [] if "Content-Type" in headers else ["Content-Type"]  # aiohttp would add application/octet-stream
    async with http.post(url, data=data, headers=headers, skip_auto_headers=skip) as response:
        return response.status, orjson.loads(await response.read())


def test_seed_example_round_trips_byte_identical(settings: Settings) -> None:
    s = edge_settings(settings)

    async def scenario() -> None:
        raw = callback_example()
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            before = time.time() * 1000
            status, answer = await post(http, f"{url}/callback/s3cret", raw)
            assert (status, answer) == (200, {"code": "1000", "message": "success", "data": None})
            status, _ = await post(http, f"{url}/callback?secret=s3cret", body(chat_callback("60001")))
            assert status == 200
        records = await read_topic(s.kafka_bootstrap, RAW.name(s))
        first = next(r for r in records if r.value == raw)
        assert first.key == b"wxid_phyyedw9xap22|25411981800@chatroom"
        headers = dict(first.headers)
        assert before - 1000 <= int(headers["wx-received-at"]) <= time.time() * 1000
        assert headers["wx-edge"] == b"edge-test" and headers["wx-remote"] == b"127.0.0.1"
        assert headers["wx-sha256"] == hashlib.sha256(raw).hexdigest().encode()
        assert len(records) == 2 and await read_topic(s.kafka_bootstrap, DLQ.name(s)) == []

    asyncio.run(scenario())


def test_test_callbacks_are_acknowledged_and_recorded(settings: Settings) -> None:
    s = edge_settings(settings)

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            assert (await post(http, f"{url}/callback/s3cret", b'{"wcId":"wxid_a","messageType":"00000","data":{}}'))[0] == 200
        (record,) = await read_topic(s.kafka_bootstrap, RAW.name(s))
        assert record.key == b"wxid_a"

    asyncio.run(scenario())


BAD_INPUT = [
    ("not JSON", b"wcId=wxid_a&messageType=60001", JSON, 400, "body is not JSON"),
    ("JSON array", b"[1, 2]", JSON, 400, "body must be a JSON object, got an array"),
    ("wrong content type", b'{"wcId":"wxid_a","messageType":"60001","data":{}}', {"Content-Type": "text/plain"}, 415,
     "content type must be application/json, got text/plain"),
    ("no content type", b'{"wcId":"wxid_a","messageType":"60001","data":{}}', {}, 415, "content type must be application/json, got none"),
    ("missing wcId", b'{"messageType":"60001","data":{}}', JSON, 400, "missing wcId"),
    ("missing messageType", b'{"wcId":"wxid_a","data":{}}', JSON, 400, "missing messageType"),
    ("missing data", b'{"wcId":"wxid_a","messageType":"60001"}', JSON, 400, "missing data"),
    ("wcId a number", b'{"wcId":7,"messageType":"60001","data":{}}', JSON, 400, "wcId must be a string, got a number"),
    ("newMsgId rounded", b'{"wcId":"wxid_a","messageType":"60001","data":{"newMsgId":1.4974741182614848e18}}', JSON, 400,
     "newMsgId is not an exact integer"),
    ("self a string", b'{"wcId":"wxid_a","messageType":"60001","data":{"self":"perhaps"}}', JSON, 400, "data.self must be a boolean"),
    ("invalid UTF-8", b'{"wcId":"wxid_a","messageType":"60001","data":{"content":"\xff"}}', JSON, 400, "body is not valid UTF-8"),
]


def test_every_bad_input_gets_its_4xx_and_lands_in_the_dlq(settings: Settings) -> None:
    s = edge_settings(settings, edge_max_body_bytes=4096)
    huge = b'{"wcId":"wxid_big","messageType":"60001","data":{"content":"' + b"x" * 10000 + b'"}}'

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            for name, raw, headers, want_status, want_reason in BAD_INPUT:
                status, answer = await post(http, f"{url}/callback/s3cret", raw, headers)
                assert status == want_status, name
                assert answer["message"].startswith(want_reason), name
            status, answer = await post(http, f"{url}/callback/s3cret", huge)
            assert (status, answer["message"]) == (413, "body larger than 4096 bytes")
        dead = await read_topic(s.kafka_bootstrap, DLQ.name(s))
        assert await read_topic(s.kafka_bootstrap, RAW.name(s)) == []
        assert len(dead) == len(BAD_INPUT) + 1
        by_reason = {dict(r.headers)["wx-reason"].decode(): r for r in dead}
        for name, raw, _, want_status, want_reason in BAD_INPUT:
            record = next(r for reason, r in by_reason.items() if reason.startswith(want_reason))
            assert record.value == raw, name
            assert dict(record.headers)["wx-status"] == str(want_status).encode()
        big = by_reason["body larger than 4096 bytes"]
        assert big.value == huge[:4096] and dict(big.headers)["wx-body-bytes"] == str(len(huge)).encode()
        assert big.key == b""  # a shared secret authenticates no account: dead letters are keyed by none
        assert by_reason["missing data"].key == b""  # not by the wcId the refused body claims
        assert all(dict(r.headers)["wx-stage"] == b"edge" for r in dead)

    asyncio.run(scenario())


def test_strangers_get_401_or_403_and_nothing_is_written(settings: Settings) -> None:
    s = edge_settings(settings, edge_account_secrets="wxid_a=only-a")
    good = body(chat_callback("60001"))

    async def scenario() -> None:
        async with running_edge(s) as (url, app), aiohttp.ClientSession() as http:
            assert (await post(http, f"{url}/callback", good))[0] == 401
            assert (await post(http, f"{url}/callback/nope", good))[0] == 403
            assert (await post(http, f"{url}/callback?secret=s3cre", good))[0] == 403
            assert (await post(http, f"{url}/callback/s3cret/extra", good))[0] == 403
            assert (await post(http, f"{url}/callback/nope", b"garbage"))[0] == 403  # auth before parsing
            status, answer = await post(http, f"{url}/callback/only-a", good)  # a per-account secret, other account
            assert (status, answer["message"]) == (403, "this secret does not admit that account")
            mine = orjson.dumps({"wcId": "wxid_a", "messageType": "60001", "data": {"content": "hi", "newMsgId": 5}})
            assert (await post(http, f"{url}/callback/only-a", mine))[0] == 200
            async with http.get(f"{url}/metrics") as response:
                metrics = (await response.read()).decode()
            assert 'wxarchive_edge_requests_total{edge="edge-test",outcome="rejected_auth"} 6.0' in metrics
            assert "s3cret" not in metrics and "only-a" not in metrics
        (only,) = await read_topic(s.kafka_bootstrap, RAW.name(s))
        assert only.value == mine
        assert await read_topic(s.kafka_bootstrap, DLQ.name(s)) == []

    asyncio.run(scenario())


def test_source_allow_list(settings: Settings) -> None:
    s = edge_settings(settings, edge_allow_ips="10.0.0.0/8,192.168.1.7")

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            status, answer = await post(http, f"{url}/callback/s3cret", body(chat_callback("60001")))
            assert (status, answer["message"]) == (403, "source address not allowed")
        assert await read_topic(s.kafka_bootstrap, RAW.name(s)) == []

    asyncio.run(scenario())


def test_operations_endpoints(settings: Settings) -> None:
    s = edge_settings(settings)

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            for path, status in (("/healthz", 200), ("/readyz", 200), ("/nowhere", 404)):
                async with http.get(url + path) as response:
                    assert response.status == status, path
            async with http.get(f"{url}/callback/s3cret") as wrong:
                assert wrong.status == 405 and wrong.headers["Allow"] == "POST"
            await post(http, f"{url}/callback/s3cret", body(chat_callback("60001")))
            async with http.get(f"{url}/metrics") as response:
                metrics = (await response.read()).decode()
        for line in ('wxarchive_edge_requests_total{edge="edge-test",outcome="accepted"} 1.0',
                     'wxarchive_edge_request_seconds_count{edge="edge-test"} 1.0',
                     'wxarchive_edge_produce_seconds_count{edge="edge-test"} 1.0',
                     'wxarchive_edge_kafka_up{edge="edge-test"} 1.0',
                     'wxarchive_edge_spool_records{edge="edge-test"} 0.0'):
            assert line in metrics

    asyncio.run(scenario())


def test_no_secret_means_no_start_unless_insecure(settings: Settings) -> None:
    s = edge_settings(settings, edge_secret="")

    async def scenario() -> None:
        with pytest.raises(ConfigError, match="the edge needs a secret: set WXARCHIVE_EDGE_SECRET"):
            async with running_edge(s):
                pass
        async with running_edge(s, insecure=True) as (url, _), aiohttp.ClientSession() as http:
            assert (await post(http, f"{url}/callback", body(chat_callback("60001"))))[0] == 200

    asyncio.run(scenario())


def test_edge_command_refuses_to_run_open_or_on_a_taken_port(settings: Settings) -> None:
    env = {"PATH": "/usr/bin:/bin", "WXARCHIVE_DATA_DIR": str(settings.data_dir), "WXARCHIVE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    done = subprocess.run([sys.executable, "-m", "commands", "edge"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("wxarchive: error: the edge needs a secret: set WXARCHIVE_EDGE_SECRET")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "commands", "edge", "--port", str(port)],
                              env={**env, "WXARCHIVE_EDGE_SECRET": "s3cret"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"wxarchive: error: 127.0.0.1:{port} is already in use by another process "
                                   "(Address already in use); choose another with --port or WXARCHIVE_EDGE_PORT")
    assert "s3cret" not in done.stderr + done.stdout
