"""Enrichment against the fake E云 over loopback: names right, API used gently, flow never held up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
import pytest

from eyun.breaker import BreakerState, CircuitBreaker
from eyun.client import EyunClient
from eyun.directory import Directory
from eyun.fake_server import DEFAULT_TOKEN, FakeEyun
from schemas.message import ArchiveMessage, parse_message
from streams.enrichment import Enricher
from tests.support import run_with_fake_eyun

T = TypeVar("T")


def message(account_index: int, directory: Directory, sender: str, group: str | None = None, n: int = 1) -> ArchiveMessage:
    account = directory.accounts[account_index]
    data = {"wId": account.w_id, "fromUser": sender, "toUser": account.wc_id, "content": "hi", "newMsgId": n}
    if group:
        data["fromGroup"] = group
    return parse_message(orjson.dumps({"wcId": account.wc_id, "messageType": "80001" if group else "60001", "data": data}))


def with_fake(scenario: Callable[[FakeEyun, str], Awaitable[T]]) -> T:
    return run_with_fake_eyun(scenario, Directory.generate(seed=9, accounts=2, friends=50, groups=3))


def test_names_as_of_archive_time_through_paced_batches() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.enforce_pacing = True
        d = fake.directory
        account = d.accounts[0]
        group = account.groups[0]
        published: list[tuple[bytes, bytes]] = []

        async def publish(key: bytes, value: bytes) -> None:
            published.append((key, value))

        async with EyunClient(url, DEFAULT_TOKEN) as client:
            enricher = Enricher(client, publish, bound=10.0, warm=False)
            batch = [message(0, d, friend, n=i) for i, friend in enumerate(account.friends[:30])]
            batch.append(message(0, d, group.members[1], group=group.id, n=99))
            names = await enricher.enrich(batch)
        for m, n in zip(batch, names):
            assert n.enriched and n.sender_name == d.people[m.sender].nickName
            assert n.sender_remark == d.people[m.sender].remark and n.sender_alias == d.people[m.sender].aliasName
        assert names[-1].conversation_name == group.name  # the group's name, via getContact with its @chatroom id
        calls = [c for c in fake.calls if c.endpoint == "getContact"]
        assert all(len(c.body["wcId"].split(",")) <= 20 for c in calls) and len(calls) == 2
        assert not any(c.pacing_violation for c in calls)
        keys = {k.decode() for k, _ in published}
        looked_up = {f"{account.wc_id}|{i}" for m in batch for i in (m.sender, m.conversation)}
        assert keys == looked_up and f"{account.wc_id}|{group.id}" in keys  # a snapshot per contact looked up

    with_fake(scenario)


def test_a_failing_api_never_holds_messages_beyond_the_bound() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.failure_rate = 1.0
        d = fake.directory

        async def publish(key: bytes, value: bytes) -> None:
            raise AssertionError("nothing to publish when E云 fails")

        breaker = CircuitBreaker(threshold=3, cooldown=60)
        async with EyunClient(url, DEFAULT_TOKEN, retries=1, backoff=0.01, breaker=breaker) as client:
            enricher = Enricher(client, publish, bound=1.0, warm=False)
            for round_ in range(4):
                started = time.monotonic()
                names = await enricher.enrich([message(0, d, f, n=round_ * 10 + i)
                                               for i, f in enumerate(d.accounts[0].friends[round_ * 3:round_ * 3 + 3])])
                assert time.monotonic() - started < 1.5
                assert not any(n.enriched for n in names)
            assert client.breaker_state is BreakerState.OPEN and enricher.stats.api_errors >= 1
            calls = len(fake.calls)
            await enricher.enrich([message(0, d, d.accounts[0].friends[40])])
            assert len(fake.calls) == calls  # breaker open: E云 is left alone

    with_fake(scenario)


def test_the_breaker_opening_is_one_warning_per_outage_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    """E云 failing every call: said once when the breaker opens (not at each failed trial), once when it closes."""
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.failure_rate = 1.0
        d = fake.directory
        friends = iter(d.accounts[0].friends)

        async def publish(key: bytes, value: bytes) -> None:
            pass

        async def enrich_until(state: BreakerState) -> None:
            for _ in range(20):
                await enricher.enrich([message(0, d, next(friends))])
                if breaker.state is state:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"the breaker never got {state}")

        breaker = CircuitBreaker(threshold=3, cooldown=0.2)
        async with EyunClient(url, DEFAULT_TOKEN, retries=0, pacing=(0.0, 0.0), breaker=breaker) as client:
            enricher = Enricher(client, publish, bound=1.0, warm=False)
            await enrich_until(BreakerState.OPEN)
            for _ in range(3):  # cooldowns pass, each trial fails and re-opens it: the same outage
                await asyncio.sleep(0.25)
                await enrich_until(BreakerState.OPEN)
            assert breaker.opened_count >= 4 and breaker.openings == 1
            fake.knobs.failure_rate = 0.0
            await asyncio.sleep(0.25)
            await enrich_until(BreakerState.CLOSED)
            fake.knobs.failure_rate = 1.0  # a second outage is a second warning
            await enrich_until(BreakerState.OPEN)
            assert breaker.openings == 2

    with caplog.at_level(logging.INFO, logger="wxarchive.enrichment"):
        with_fake(scenario)
    said = [(r.levelname, r.getMessage(), getattr(r, "reason", None)) for r in caplog.records
            if r.name == "wxarchive.enrichment"]
    opened = "E云 lookups keep failing: circuit breaker open, messages are archived without names until E云 answers again"
    closed = "E云 answers again: circuit breaker closed, lookups resume"
    assert [(level, msg) for level, msg, _ in said] == [("WARNING", opened), ("INFO", closed), ("WARNING", opened)]
    assert said[0][2] == "getContact: 失败 (code 1001)"  # what E云 answered, not "breaker open"


def test_a_slow_answer_still_fills_the_cache_for_later_messages() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.latency_ms = 800
        d = fake.directory

        async def publish(key: bytes, value: bytes) -> None:
            pass

        async with EyunClient(url, DEFAULT_TOKEN, timeout=5) as client:
            enricher = Enricher(client, publish, bound=0.2, warm=False)
            friend = d.accounts[0].friends[0]
            started = time.monotonic()
            (first,) = await enricher.enrich([message(0, d, friend)])
            assert not first.enriched and time.monotonic() - started < 0.5
            await asyncio.sleep(1.0)
            fake.knobs.failure_rate = 1.0  # from here on E云 would fail: the cache must answer
            (later,) = await enricher.enrich([message(0, d, friend, n=2)])
            assert later.enriched and later.sender_name == d.people[friend].nickName

    with_fake(scenario)


def test_messages_that_already_waited_at_the_edge_are_not_held_again() -> None:
    """A worker behind its input: the bound counts from the edge, so a backlog is not held a bound per batch."""
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.latency_ms = 600
        d = fake.directory

        async def publish(key: bytes, value: bytes) -> None:
            pass

        async with EyunClient(url, DEFAULT_TOKEN, timeout=5) as client:
            enricher = Enricher(client, publish, bound=2.0, warm=False)
            friends = d.accounts[0].friends
            started = time.monotonic()
            (late,) = await enricher.enrich([message(0, d, friends[0])], waited_s=1.9)
            assert time.monotonic() - started < 0.3 and not late.enriched  # 0.1 s of its bound was left
            started = time.monotonic()
            (fresh,) = await enricher.enrich([message(0, d, friends[1])], waited_s=0.0)
            assert 0.5 < time.monotonic() - started < 2.0 and fresh.enriched  # a fresh one waits for its answer

    with_fake(scenario)


def test_first_sight_of_an_account_warms_the_cache_from_its_address_list() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        d = fake.directory
        account = d.accounts[1]

        async def publish(key: bytes, value: bytes) -> None:
            pass

        async with EyunClient(url, DEFAULT_TOKEN, pacing=(0.0, 0.0)) as client:
            enricher = Enricher(client, publish, bound=5.0)
            await enricher.enrich([message(1, d, account.friends[0])])
            for _ in range(50):
                if enricher.stats.warmed_accounts:
                    break
                await asyncio.sleep(0.1)
            assert enricher.stats.warmed_accounts == 1
            saved = [g.id for g in account.groups if g.saved]
            assert all(f"{account.wc_id}|{i}" in enricher.cache for i in account.friends + saved)
            endpoints = [c.endpoint for c in fake.calls]
            assert endpoints.index("initAddressList") < endpoints.index("getAddressList")
            await enricher.close()

    with_fake(scenario)


def test_the_cache_loaded_from_the_contacts_topic_is_used_without_calls() -> None:
    d = Directory.generate(seed=9, accounts=2, friends=50, groups=3)
    account = d.accounts[0]
    friend = account.friends[3]
    contact = d.people[friend]
    enricher = Enricher(EyunClient("http://127.0.0.1:1", DEFAULT_TOKEN), lambda k, v: asyncio.sleep(0), warm=False)
    enricher.load(f"{account.wc_id}|{friend}".encode(),
                  orjson.dumps({**contact.to_wire(), "account": account.wc_id, "fetched_ms": int(time.time() * 1000)}))
    peer_msg = message(0, d, friend)
    (names,) = asyncio.run(enricher.enrich([peer_msg]))
    assert names.enriched and names.sender_name == contact.nickName and enricher.stats.lookups == 0
