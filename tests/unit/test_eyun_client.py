"""The E云 client against the fake E云 server over loopback HTTP: batching, pacing, retries, breaker, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypedDict, TypeVar

import aiohttp
import orjson
import pytest
from aiohttp import web

from eyun.breaker import BreakerState, CircuitBreaker
from eyun.client import EyunClient
from eyun.directory import Directory
from eyun.errors import EyunApiError, EyunProtocolError, EyunTimeout, EyunTransportError, EyunUnavailable
from eyun.fake_server import DEFAULT_TOKEN, FakeEyun
from tests.support import run_with_fake_eyun
from wxarchive.http_server import serve_app

T = TypeVar("T")


class Timing(TypedDict):
    pacing: tuple[float, float]
    backoff: float


FAST: Timing = {"pacing": (0.0, 0.0), "backoff": 0.01}


def run_with_fake(scenario: Callable[[FakeEyun, str], Awaitable[T]]) -> T:
    return run_with_fake_eyun(scenario, Directory.generate(seed=7, accounts=2, friends=60, groups=4))


def contact_calls(fake: FakeEyun) -> list[list[str]]:
    return [c.body["wcId"].split(",") for c in fake.calls if c.endpoint == "getContact"]


def test_45_unknown_ids_take_3_calls_of_at_most_20() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        account = fake.directory.accounts[0]
        wanted = account.friends[:45]
        async with EyunClient(url, DEFAULT_TOKEN, **FAST) as client:
            parts = await asyncio.gather(*(client.get_contacts(account.w_id, wanted[i::3]) for i in range(3)))
        found = {k: v for part in parts for k, v in part.items()}
        names = {k: v.nickName if v else None for k, v in found.items()}
        assert names == {i: fake.directory.people[i].nickName for i in wanted}
        calls = contact_calls(fake)
        assert len(calls) == 3 and all(len(c) <= 20 for c in calls)
        assert sorted(i for c in calls for i in c) == sorted(wanted)

    run_with_fake(scenario)


def test_concurrent_lookups_of_one_id_share_one_call() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        account = fake.directory.accounts[0]
        async with EyunClient(url, DEFAULT_TOKEN, **FAST) as client:
            results = await asyncio.gather(*(client.get_contact(account.w_id, account.friends[0]) for _ in range(10)))
            assert client.stats.contacts_coalesced == 9
        assert {r.userName for r in results if r} == {account.friends[0]}
        assert contact_calls(fake) == [[account.friends[0]]]

    run_with_fake(scenario)


def test_pacing_keeps_300ms_between_calls_of_one_account() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.enforce_pacing = True  # a call too soon would be answered 1001
        first, second = fake.directory.accounts
        async with EyunClient(url, DEFAULT_TOKEN) as client:  # the documented 300-800 ms
            await asyncio.gather(client.get_contacts(first.w_id, first.friends[:50]),
                                 client.get_contacts(second.w_id, second.friends[:20]))
        by_account: dict[str, list[float]] = {}
        for call in fake.calls:
            by_account.setdefault(call.body["wId"], []).append(call.at)
        gaps = [b - a for times in by_account.values() for a, b in zip(times, times[1:])]
        assert len(by_account[first.w_id]) == 3 and gaps and min(gaps) >= 0.3
        assert not any(c.pacing_violation for c in fake.calls) and all(c.code == "1000" for c in fake.calls)
        # accounts are paced apart from each other: the second account's call did not wait for the first's
        starts = {w: times[0] for w, times in by_account.items()}
        assert abs(starts[first.w_id] - starts[second.w_id]) < 0.25

    run_with_fake(scenario)


def test_unpaced_calls_are_what_the_fake_flags() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        account = fake.directory.accounts[0]
        async with EyunClient(url, DEFAULT_TOKEN, **FAST) as client:
            for friend in account.friends[:3]:
                await client.get_contact(account.w_id, friend)
        assert [c.pacing_violation for c in fake.calls] == [False, True, True]

    run_with_fake(scenario)


def test_failures_are_retried_with_backoff() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.fail_next = 2
        account = fake.directory.accounts[0]
        async with EyunClient(url, DEFAULT_TOKEN, retries=2, **FAST) as client:
            contact = await client.get_contact(account.w_id, account.friends[1])
            assert client.stats.retries == 2 and client.breaker_state is BreakerState.CLOSED
        assert contact is not None and contact.userName == account.friends[1]
        assert [c.code for c in fake.calls] == ["1001", "1001", "1000"]

    run_with_fake(scenario)


def test_timeouts_are_retried_then_raised_typed() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.hang_next, fake.knobs.hang_s = 5, 0.5
        account = fake.directory.accounts[0]
        async with EyunClient(url, DEFAULT_TOKEN, timeout=0.2, retries=1, **FAST) as client:
            with pytest.raises(EyunTimeout, match="getContact: no answer within 0.2s"):
                await client.get_contact(account.w_id, account.friends[0])
            assert client.stats.calls == 2

    run_with_fake(scenario)


def test_breaker_opens_fails_fast_and_closes_after_a_good_trial() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        fake.knobs.failure_rate = 1.0
        account = fake.directory.accounts[0]
        breaker = CircuitBreaker(threshold=3, cooldown=0.3)
        async with EyunClient(url, DEFAULT_TOKEN, retries=0, breaker=breaker, **FAST) as client:

            def state() -> BreakerState:  # read afresh each time: mypy keeps an attribute narrowed across awaits
                return client.breaker_state

            for _ in range(3):
                with pytest.raises(EyunApiError):
                    await client.query_login_wx()
            assert state() is BreakerState.OPEN
            sent = len(fake.calls)
            with pytest.raises(EyunUnavailable):
                await client.get_contact(account.w_id, account.friends[0])
            assert len(fake.calls) == sent  # failed fast, nothing sent
            await asyncio.sleep(0.35)
            assert state() is BreakerState.HALF_OPEN
            with pytest.raises(EyunApiError):  # the trial fails: open again
                await client.query_login_wx()
            assert state() is BreakerState.OPEN
            fake.knobs.failure_rate = 0.0
            await asyncio.sleep(0.35)
            assert [x.wcId for x in await client.query_login_wx()] == [a.wc_id for a in fake.directory.accounts]
            assert state() is BreakerState.CLOSED and breaker.opened_count == 2

    run_with_fake(scenario)


def test_typed_errors_carry_code_and_message() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        account = fake.directory.accounts[0]
        async with EyunClient(url, "wrong-token", retries=0, **FAST) as client:
            with pytest.raises(EyunApiError) as err:
                await client.query_login_wx()
        assert (err.value.code, err.value.message, err.value.endpoint) == ("1001", "Authorization无效", "queryLoginWx")
        async with EyunClient(url, DEFAULT_TOKEN, retries=0, **FAST) as client:
            with pytest.raises(EyunApiError, match="wId不存在或已失效"):
                await client.get_contact("not-a-wid", account.friends[0])
            with pytest.raises(EyunApiError, match="必须调用初始化通讯录列表接口"):
                await client.get_address_list(account.w_id)
        async with EyunClient(url + "/no-such-prefix", DEFAULT_TOKEN, retries=0, **FAST) as client:
            with pytest.raises(EyunTransportError, match="HTTP 404"):
                await client.query_login_wx()

    run_with_fake(scenario)


def test_connection_refused_is_a_transport_error() -> None:
    async def scenario() -> None:
        async with EyunClient("http://127.0.0.1:1", DEFAULT_TOKEN, retries=0) as client:
            with pytest.raises(EyunTransportError, match="queryLoginWx: ClientConnectorError"):
                await client.query_login_wx()

    asyncio.run(scenario())


@pytest.mark.parametrize(("answer", "error", "match"), [
    (b'{"code":"1000","message":"ok","data":"oops"}', EyunProtocolError, "not a list of contacts"),
    (b"<html>502 Bad Gateway</html>", EyunTransportError, "answer is not JSON"),
    (b'{"message":"ok"}', EyunProtocolError, "answer has no code"),
])
def test_malformed_answers(answer: bytes, error: type[Exception], match: str) -> None:
    async def scenario() -> None:
        async def misbehave(_: web.Request) -> web.Response:
            return web.Response(body=answer)

        app = web.Application()
        app.router.add_post("/getContact", misbehave)
        runner, url = await serve_app(app)
        try:
            async with EyunClient(url, DEFAULT_TOKEN, retries=0, **FAST) as client:
                with pytest.raises(error, match=match):
                    await client.get_contact("w", "wxid_x")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_address_list_login_list_groups_and_send_text() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        account = fake.directory.accounts[0]
        group = account.groups[0]
        async with EyunClient(url, DEFAULT_TOKEN, **FAST) as client:
            await client.init_address_list(account.w_id)
            book = await client.get_address_list(account.w_id)
            assert book.friends == account.friends and book.chatrooms == [g.id for g in account.groups if g.saved]
            assert set(book.chatrooms) < {g.id for g in account.groups}  # unsaved groups are missing, as in E云
            assert (await client.get_contact(account.w_id, group.id)).nickName == group.name  # type: ignore[union-attr]
            info = await client.get_chat_room_info(account.w_id, group.id)
            assert info is not None and info.nickName == group.name and info.memberCount == len(group.members)
            assert {m.userName for m in info.chatRoomMembers} == set(group.members)
            members = await client.get_chat_room_member(account.w_id, group.id)
            assert [m.userName for m in members] == group.members
            sent = await client.send_text(account.w_id, group.id, "@老王\u2005 请注意发言", at=[group.members[1]])
            assert sent.wcId == group.id and sent.newMsgId > 0
        assert fake.sent[0]["at"] == group.members[1] and fake.sent[0]["content"].startswith("@老王")

    run_with_fake(scenario)


def test_fake_refuses_more_than_20_ids_as_the_documents_say() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        account = fake.directory.accounts[0]
        async with EyunClient(url, DEFAULT_TOKEN, retries=0, **FAST) as client:
            with pytest.raises(EyunApiError, match="wcId最多20个"):
                await client.call("getContact", {"wId": account.w_id, "wcId": ",".join(account.friends[:21])})

    run_with_fake(scenario)


def test_relogin_changes_the_wid() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        account = fake.directory.accounts[0]
        old = account.w_id
        new = fake.relogin(account.wc_id)
        async with EyunClient(url, DEFAULT_TOKEN, retries=0, **FAST) as client:
            with pytest.raises(EyunApiError):
                await client.get_contact(old, account.friends[0])
            assert await client.get_contact(new, account.friends[0]) is not None
        assert old != new

    run_with_fake(scenario)


def test_fake_admin_knobs_over_http() -> None:
    async def scenario(fake: FakeEyun, url: str) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/_fake/knobs", data=orjson.dumps({"latency_ms": 5})) as r:
                assert (await r.json())["latency_ms"] == 5.0
            async with http.post(f"{url}/_fake/knobs", data=orjson.dumps({"nonsense": 1})) as r:
                assert r.status == 400 and "unknown knob 'nonsense'" in (await r.json())["error"]
        assert fake.knobs.latency_ms == 5.0

    run_with_fake(scenario)
