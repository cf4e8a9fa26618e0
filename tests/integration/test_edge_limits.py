"""The edge at its real size limit and when a refused body meets an outage: one size story end to end, and
never a 4xx with nothing kept (invariants 1 and 4). Every test runs at the default body limit (1 MiB)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from deploy.kafka_broker import LocalKafka
from ingest.records import OutRecord
from ingest.spool import Spool
from tests.conftest import broker_spec
from tests.fixtures.callbacks import ACCOUNT
from tests.support import edge_settings, read_topic, running_edge
from wxarchive.config import Settings
from wxarchive.topics import DLQ, RAW, max_record_bytes, topic_config

JSON = {"Content-Type": "application/json"}
LIMIT = Settings().edge_max_body_bytes


def sized_callback(size: int, n: int = 0) -> bytes:
    """A valid text callback of exactly `size` bytes."""
    head = orjson.dumps({"wcId": ACCOUNT, "messageType": "60001",
                         "data": {"fromUser": "wxid_peer_big", "toUser": ACCOUNT, "newMsgId": 7 * 10**17 + n,
                                  "timestamp": 1_700_000_000, "content": ""}})
    assert head.endswith(b'""}}')
    return head[:-3] + b"x" * (size - len(head)) + b'"}}'


def small(n: int) -> bytes:
    return orjson.dumps({"wcId": ACCOUNT, "messageType": "60001",
                         "data": {"fromUser": f"wxid_peer{n % 3}", "toUser": ACCOUNT, "content": f"m{n}",
                                  "newMsgId": 10**18 + n, "timestamp": 1_700_000_000 + n}})


async def post(http: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, str]:
    async with http.post(url, data=data, headers=JSON) as response:
        return response.status, orjson.loads(await response.read())["message"]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    broker = LocalKafka(broker_spec(tmp_path / "own-kafka"))
    broker.start()
    yield broker
    broker.stop()


def test_the_size_limit_is_one_story(settings: Settings) -> None:
    """A body of exactly the limit is archived; one byte over is a 413 and a dead letter with the full length and
    hash; a body far over is refused unread; callbacks around them all get 200; the topics take what the
    edge accepts."""
    s = edge_settings(settings)
    assert s.edge_max_body_bytes == LIMIT == 1024 * 1024
    at_limit, over = sized_callback(LIMIT, 1), sized_callback(LIMIT + 1, 2)
    far_over = sized_callback(5 * LIMIT, 3)

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            statuses = [await post(http, f"{url}/callback/s3cret", small(0))]

            async def neighbour(i: int) -> tuple[int, str]:
                await asyncio.sleep(0.01 * i)
                return await post(http, f"{url}/callback/s3cret", small(i))

            # unrelated callbacks in flight while the big ones are handled, and in the second after
            results = await asyncio.gather(post(http, f"{url}/callback/s3cret", at_limit),
                                           post(http, f"{url}/callback/s3cret", over),
                                           *(neighbour(i) for i in range(1, 40)))
            statuses += results[2:]
            assert results[0] == (200, "success")
            assert results[1] == (413, f"body larger than {LIMIT} bytes")
            started = time.monotonic()
            assert await post(http, f"{url}/callback/s3cret", far_over) == (413, f"body larger than {LIMIT} bytes")
            assert time.monotonic() - started < 2.0
            statuses += [await post(http, f"{url}/callback/s3cret", small(i)) for i in range(40, 45)]
            assert statuses == [(200, "success")] * 45
        raw = await read_topic(s.kafka_bootstrap, RAW.name(s))
        assert sorted(r.value for r in raw) == sorted([at_limit] + [small(i) for i in range(45)])
        letters = {int(dict(r.headers)["wx-body-bytes"]): r for r in await read_topic(s.kafka_bootstrap, DLQ.name(s))}
        assert sorted(letters) == [LIMIT + 1, 5 * LIMIT]
        one_over = dict(letters[LIMIT + 1].headers)
        assert letters[LIMIT + 1].value == over[:LIMIT]
        assert one_over["wx-sha256"] == hashlib.sha256(over).hexdigest().encode()  # of the whole, not the part kept
        assert one_over["wx-body-truncated"] == b"true" and one_over["wx-stage"] == b"edge"
        assert one_over["wx-status"] == b"413"
        unread = dict(letters[5 * LIMIT].headers)
        assert letters[5 * LIMIT].value == far_over[:LIMIT] and unread["wx-body-truncated"] == b"true"
        read = int(unread["wx-sha256-of"].split()[2])  # what was read before the 413: about the limit, not 5 MiB
        assert LIMIT <= read < 2 * LIMIT and unread["wx-sha256"] == hashlib.sha256(far_over[:read]).hexdigest().encode()
        for topic in (RAW, DLQ):
            assert int((await topic_config(s, topic))["max.message.bytes"]) >= max_record_bytes(s)

    asyncio.run(scenario())


def test_a_refused_body_during_an_outage_is_503_not_400(settings: Settings, own_broker: LocalKafka) -> None:
    """Without a spool, a malformed body that cannot be kept gets 503 (E云 sends it again), not 400."""
    s = edge_settings(settings, kafka_bootstrap=own_broker.spec.bootstrap, edge_produce_timeout=1.0)

    async def scenario() -> None:
        async with running_edge(s) as (url, app), aiohttp.ClientSession() as http:
            assert (await post(http, f"{url}/callback/s3cret", b"{broken"))[0] == 400
            await asyncio.to_thread(own_broker.stop)
            # in the window before the probe notices, and after: never 400 with nothing kept
            for _ in range(3):
                status, _ = await post(http, f"{url}/callback/s3cret", b"{broken")
                assert status == 503
            await asyncio.to_thread(own_broker.start)
            deadline = time.monotonic() + 30
            while not app.handoff.ready and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert (await post(http, f"{url}/callback/s3cret", b"{broken"))[0] == 400
            async with http.get(f"{url}/metrics") as response:
                metrics = (await response.read()).decode()
            assert 'outcome="unavailable"} 3.0' in metrics
        assert [r.value for r in await read_topic(s.kafka_bootstrap, DLQ.name(s))][-1:] == [b"{broken"]

    asyncio.run(scenario())


def test_a_spooled_record_kafka_refuses_is_dead_lettered_and_the_rest_drain(settings: Settings, tmp_path: Path) -> None:
    """A spool written under a larger body limit holds a record today's limit refuses: it moves to the dead-letter
    topic with the reason, and the records around it are delivered once, in order."""
    s = edge_settings(settings, edge_spool=True, kafka_partitions=1)
    before, after = [small(i) for i in range(5)], [small(i) for i in range(5, 10)]
    big = sized_callback(LIMIT + 200_000, 9)
    spool_dir = s.data_dir.resolve() / "edge-spool" / s.edge_id

    async def earlier_run() -> None:
        spool = Spool(spool_dir)
        spool.open()
        for value in [*before, big, *after]:
            await spool.append(OutRecord(RAW.name(s), ACCOUNT.encode(), value, (("wx-edge", b"edge-test"),)))
        await spool.close()

    async def scenario() -> None:
        async with running_edge(s) as (url, app), aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while (app.handoff.spool is None or app.handoff.spool.pending) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await post(http, f"{url}/callback/s3cret", small(10)) == (200, "success")
            async with http.get(f"{url}/metrics") as response:
                assert 'wxarchive_edge_spool_dead_letters_total{edge="edge-test"} 1.0' in (await response.read()).decode()
        assert [r.value for r in await read_topic(s.kafka_bootstrap, RAW.name(s))] == [*before, *after, small(10)]
        (letter,) = await read_topic(s.kafka_bootstrap, DLQ.name(s))
        headers = dict(letter.headers)
        assert headers["wx-reason"].startswith(b"Kafka refused the record: MessageSizeTooLargeError")
        assert letter.value == big[:LIMIT] and headers["wx-body-bytes"] == str(len(big)).encode()
        assert headers["wx-sha256"] == hashlib.sha256(big).hexdigest().encode()

    asyncio.run(earlier_run())
    asyncio.run(scenario())


def test_the_drain_survives_errors_and_says_so_on_readyz(settings: Settings, own_broker: LocalKafka) -> None:
    """A drain that fails (here: the spool's reads fail three times) keeps the probe loop alive, makes /readyz 503
    with the reason, and delivers everything once it can read again."""
    s = edge_settings(settings, kafka_bootstrap=own_broker.spec.bootstrap, edge_spool=True, kafka_partitions=1)
    bodies = [small(i) for i in range(20)]

    async def scenario() -> None:
        async with running_edge(s) as (url, app), aiohttp.ClientSession() as http:
            await asyncio.to_thread(own_broker.stop)
            for value in bodies:
                assert (await post(http, f"{url}/callback/s3cret", value))[0] == 200
            assert app.handoff.spool is not None
            spool = app.handoff.spool
            real_read, failures = spool.read_batch, [3]

            async def failing_read(limit: int = 500):  # type: ignore[no-untyped-def]
                if failures[0]:
                    failures[0] -= 1
                    raise OSError(5, "Input/output error")
                return await real_read(limit)

            spool.read_batch = failing_read  # type: ignore[method-assign]
            await asyncio.to_thread(own_broker.start)
            deadline, said = time.monotonic() + 30, ""
            while failures[0] and time.monotonic() < deadline:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 503:
                        said = orjson.loads(await response.read())["message"]
                await asyncio.sleep(0.05)
            while spool.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert "the spool cannot be drained: OSError" in said
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 200
            async with http.get(f"{url}/metrics") as response:
                assert 'wxarchive_edge_spool_drain_errors_total{edge="edge-test"} 3.0' in (await response.read()).decode()
        assert [r.value for r in await read_topic(s.kafka_bootstrap, RAW.name(s))] == bodies

    asyncio.run(scenario())


def test_a_refused_body_is_keyed_by_the_account_its_secret_admits(settings: Settings) -> None:
    """A per-account secret's refused body is a dead letter under that account, whatever wcId the body claims."""
    s = edge_settings(settings, edge_secret="", edge_account_secrets=f"{ACCOUNT}=only-mine")
    claims_other = b'{"wcId":"wxid_other","messageType":"60001"}'

    async def scenario() -> None:
        async with running_edge(s) as (url, _), aiohttp.ClientSession() as http:
            assert await post(http, f"{url}/callback/only-mine", claims_other) == (400, "missing data")
        (letter,) = await read_topic(s.kafka_bootstrap, DLQ.name(s))
        assert letter.key == ACCOUNT.encode() and letter.value == claims_other
        assert await read_topic(s.kafka_bootstrap, RAW.name(s)) == []

    asyncio.run(scenario())
