"""`wxarchive api` on a running archive: the real broker, the worker and the sink with its door (chdb behind it),
after a simulator run. One archive is started for the whole module (fake E云, worker, sink, door and API in one
event loop on a background thread) and every test reads it over HTTP as a client would."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings as hypothesis_settings

from access.audit import AuditLog
from access.caller import Caller
from access.roles import PERMISSIONS, Permission, Role
from access.token_admin import create_token, revoke_token
from api.service import ApiService
from eyun.directory import Directory
from eyun.fake_server import DEFAULT_TOKEN, FakeEyun, serve as serve_fake
from eyun.traffic import TrafficConfig, TrafficGenerator
from schemas.access import AuditRecord
from sinks.service import SinkService
from streams.worker import Worker
from tests.fixtures.scrm_seed import GROUP_ITEM, MEMBER, PRIVATE_ANSWER, like_seed, shape
from tests.support import publish_raw, read_topic
from wxarchive.config import Settings
from wxarchive.errors import ConfigError
from wxarchive.net import free_ports
from wxarchive.topics import AUDIT, RAW

pytestmark = pytest.mark.timeout(600)  # the first test also starts the module's archive

T = TypeVar("T")
SEED = 53
TIMEOUT_S = 600  # the module's archive starts with the first test that uses it


class Loop:
    """An event loop on its own thread, so the archive's services outlive one test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="archive-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclasses.dataclass
class Archive:
    settings: Settings
    loop: Loop
    sink: SinkService
    worker: Worker
    api: ApiService
    tokens: dict[str, str]  # role -> token, "revoked" -> a revoked admin token
    names: dict[str, str]   # role -> principal name
    sample: dict[str, str]  # an account, a group, a private peer, a message identity, a group member

    @property
    def url(self) -> str:
        return self.api.url

    def get(self, path: str, role: str | None = "admin", **params: Any) -> requests.Response:
        return requests.get(self.url + path, params=params, headers=self.auth(role), timeout=60)

    def auth(self, role: str | None) -> dict[str, str]:
        if role is None:
            return {}
        token = self.tokens.get(role, role)  # a role's token, or the text given as a token
        return {"Authorization": f"Bearer {token}"}

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """A query on the sink's own engine (the truth the API is compared with)."""
        return self.loop.run(self.sink.sink.clickhouse.query_rows(sql))

    def audit_records(self) -> list[AuditRecord]:
        records = self.loop.run(read_topic(self.settings.kafka_bootstrap, AUDIT.name(self.settings)))
        return [AuditRecord.from_json(r.value) for r in records]


def archive_settings(tmp: Path, bootstrap: str) -> Settings:
    door, sink, worker = free_ports(3)
    base = Settings.load(env={"WXARCHIVE_DATA_DIR": str(tmp / "var"), "WXARCHIVE_KAFKA_BOOTSTRAP": bootstrap})
    return dataclasses.replace(base, topic_prefix=f"api{uuid.uuid4().hex[:8]}", kafka_partitions=2,
                               worker_store="memory://", sink_batch_rows=400, sink_batch_seconds=0.3,
                               door_port=door, sink_port=sink, worker_port=worker, api_sql_max_rows=1000,
                               api_sql_max_bytes=1024 * 1024)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, bootstrap: str) -> Iterator[Archive]:
    loop = Loop()
    settings = archive_settings(tmp_path_factory.mktemp("api"), bootstrap)
    generator = TrafficGenerator(TrafficConfig(count=800, seed=SEED, duplicate_rate=0.1, malformed_rate=0.01))
    bodies = generator.bodies()
    stack: list[Any] = []

    async def start() -> Archive:
        fake = FakeEyun(Directory.generate(seed=SEED, accounts=3))
        runner, url = await serve_fake(fake)
        stack.append(runner.cleanup)
        s = dataclasses.replace(settings, eyun_url=url, eyun_token=DEFAULT_TOKEN)
        await publish_raw(s, bodies)
        audit = AuditLog(s)
        tokens, names = {}, {}
        for role in Role:
            tokens[role.value], principal = await create_token(s, f"test-{role.value}", role, Caller.cli(), audit)
            names[role.value] = principal.name
        tokens["revoked"], revoked = await create_token(s, "test-revoked", Role.ADMIN, Caller.cli(), audit)
        await revoke_token(s, revoked.token_id, Caller.cli(), audit)
        await audit.close()
        sink = SinkService(s)
        await sink.start()
        stack.append(sink.stop)
        assert await sink.started()
        worker = Worker(s)
        await worker.start()
        stack.append(worker.stop)
        expected = generator.summary.expected_unique_messages
        await _until(lambda: _count(sink, "SELECT count() FROM wxarchive.v_messages"), expected, 180)
        api = ApiService(s, port=0)
        await api.start()
        stack.append(api.stop)
        assert api.principals is not None
        await api.principals.wait_ready(30)
        await _until(lambda: _ready(api.url), True, 60)
        return Archive(s, loop, sink, worker, api, tokens, names, await _sample(sink))

    async def stop() -> None:
        for step in reversed(stack):
            await step()

    try:
        yield loop.run(start(), timeout=TIMEOUT_S)
    finally:
        loop.run(stop(), timeout=120)
        loop.close()


async def _count(sink: SinkService, sql: str) -> int:
    return int((await sink.sink.clickhouse.query_rows(sql))[0][0])


async def _ready(url: str) -> bool:
    return (await asyncio.to_thread(requests.get, f"{url}/readyz", timeout=10)).status_code == 200


async def _until(probe: Any, wanted: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (got := await probe()) != wanted:
        assert time.monotonic() < deadline, f"waited {timeout:g}s for {wanted!r}, got {got!r}"
        await asyncio.sleep(0.3)


async def _sample(sink: SinkService) -> dict[str, str]:
    q = sink.sink.clickhouse.query_rows
    (account, group), = await q("SELECT account, conversation FROM wxarchive.v_last_messages WHERE is_group "
                                "ORDER BY message_count DESC, conversation LIMIT 1")
    (peer,), = await q(f"SELECT conversation FROM wxarchive.v_last_messages WHERE account = '{account}' "
                       "AND NOT is_group ORDER BY message_count DESC, conversation LIMIT 1")
    (identity, member), = await q(f"SELECT identity, sender FROM wxarchive.v_messages WHERE account = '{account}' "
                                  f"AND conversation = '{group}' AND NOT is_self ORDER BY time, identity LIMIT 1 "
                                  "OFFSET 3")
    return {"account": account, "group": group, "peer": peer, "identity": identity, "member": member}


# -- the authorization matrix ------------------------------------------------------------------------------------

def routes(sample: dict[str, str], word: str) -> list[tuple[str, str, dict[str, Any], Permission, str]]:
    """(method, path, parameters or JSON body, permission, audit action) for every content route."""
    a, g, i, m = sample["account"], sample["group"], sample["identity"], sample["member"]
    return [
        ("GET", "/api/v1/accounts", {}, Permission.CONVERSATIONS_READ, "accounts.list"),
        ("GET", f"/api/v1/accounts/{a}/conversations", {"limit": 5}, Permission.CONVERSATIONS_READ,
         "conversations.list"),
        ("GET", f"/api/v1/accounts/{a}/conversations/{g}/messages", {"limit": 5}, Permission.CONVERSATIONS_READ,
         "messages.list"),
        ("GET", f"/api/v1/accounts/{a}/messages/{i}", {}, Permission.CONVERSATIONS_READ, "messages.get"),
        ("POST", "/api/v1/sql", {"query": "SELECT count() FROM wxarchive.v_messages"}, Permission.SQL_QUERY,
         "sql.query"),
        ("GET", "/api/v1/audit", {"limit": 3}, Permission.AUDIT_READ, "audit.list"),
        ("GET", "/wechat_api/message/findLastMsgList", {"status": 1, "uin": a}, Permission.CONVERSATIONS_READ,
         "scrm.findLastMsgList"),
        ("GET", "/wechat_api/message/findLastMsgList", {"adminUserId": 1, "uin": a, "isRoom": 0, "page": 1,
                                                        "wechatContactName": ""},
         Permission.CONVERSATIONS_READ, "scrm.findLastMsgList"),
        ("GET", "/wechat_api/chatroom/getMember", {"uin": a, "userName": a, "charRoomId": g},
         Permission.CONVERSATIONS_READ, "scrm.getMember"),
        ("GET", "/wechat_api/wechatContact/ipadGetMemberDetail", {"chatRoomName": g, "uin": a, "userName": m},
         Permission.CONVERSATIONS_READ, "scrm.ipadGetMemberDetail"),
        ("GET", "/wechat_api/chatroom/getGroupCount", {"uin": a, "chatRoomId": g}, Permission.CONVERSATIONS_READ,
         "scrm.getGroupCount"),
        ("GET", "/wechat_api/chatroom/doSave", {"keyword": word}, Permission.KEYWORDS_WRITE, "keywords.add"),
        ("GET", "/wechat_api/sensitive/list", {}, Permission.KEYWORDS_READ, "keywords.list"),
        ("GET", "/wechat_api/sensitive/delete", {"keyword": word}, Permission.KEYWORDS_WRITE, "keywords.remove"),
    ]


def call(archive: Archive, method: str, path: str, parameters: dict[str, Any], who: str | None) -> requests.Response:
    if method == "POST":
        return requests.post(archive.url + path, json=parameters, headers=archive.auth(who), timeout=60)
    return requests.get(archive.url + path, params=parameters, headers=archive.auth(who), timeout=60)


def test_every_route_answers_every_role_as_the_table_says_and_audits_each_allowed_request_once(
        archive: Archive) -> None:
    word = f"矩阵{uuid.uuid4().hex[:6]}"
    callers = [*(r.value for r in Role), None, "wxa_not-a-token-of-ours", "revoked"]
    answered: list[tuple[requests.Response, str, str, dict[str, Any], str]] = []
    refused: list[str] = []
    for method, path, parameters, permission, action in routes(archive.sample, word):
        for who in callers:
            response = call(archive, method, path, parameters, who)
            request_id = response.headers["X-Request-Id"]
            if who in (None, "wxa_not-a-token-of-ours", "revoked"):
                expected = 401
            else:
                expected = 200 if Role(who) in PERMISSIONS[permission] else 403
            assert response.status_code == expected, (method, path, who, response.text)
            if expected == 200:
                answered.append((response, who or "", action, parameters, path))
            else:
                body = response.json()
                assert body["error"] in ("unauthorized", "forbidden") and body["reason"], body
                assert body["request_id"] == request_id
                if expected == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                refused.append(request_id)
    assert len(answered) == sum(len(PERMISSIONS[p]) for _, _, _, p, _ in routes(archive.sample, word))

    by_request: dict[str, list[AuditRecord]] = {}
    for record in archive.audit_records():
        by_request.setdefault(record.request_id, []).append(record)
    for response, role, action, parameters, path in answered:
        records = by_request.get(response.headers["X-Request-Id"], [])
        assert len(records) == 1, (path, role, records)
        record = records[0]
        assert (record.principal, record.role, record.action, record.status) == (
            archive.names[role], role, action, 200), record
        assert record.token_id and record.client.startswith("127.0.0.1:")
        if action == "sql.query":
            assert record.parameters == {"query": parameters["query"]} and record.result_count == 1
        else:
            assert {k: str(v) for k, v in parameters.items()}.items() <= record.parameters.items(), record
            assert record.result_count is not None
        if action == "messages.get":
            assert record.parameters["identity"] == archive.sample["identity"]
    assert not any(request_id in by_request for request_id in refused), "a refused request left an audit record"


def test_a_failure_after_admission_is_audited_once_with_its_status(archive: Archive) -> None:
    missing = archive.get(f"/api/v1/accounts/{archive.sample['account']}/messages/999", "viewer")
    bad_sql = requests.post(archive.url + "/api/v1/sql", json={"query": "DROP TABLE wxarchive.messages"},
                            headers=archive.auth("analyst"), timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert bad_sql.status_code == 403 and "readonly" in bad_sql.json()["reason"]
    records = {r.request_id: r for r in archive.audit_records()}
    assert records[missing.headers["X-Request-Id"]].status == 404
    refused = records[bad_sql.headers["X-Request-Id"]]
    assert (refused.action, refused.status, refused.parameters["query"]) == (
        "sql.query", 403, "DROP TABLE wxarchive.messages")


def test_with_the_audit_topic_unreachable_content_requests_get_503_and_nothing_else(archive: Archive) -> None:
    (dead,) = free_ports(1)
    api = ApiService(archive.settings, audit_settings=dataclasses.replace(archive.settings,
                                                                          kafka_bootstrap=f"127.0.0.1:{dead}"),
                     audit_timeout_s=1.0, port=0)
    archive.loop.run(api.start())
    try:
        assert api.principals is not None
        archive.loop.run(api.principals.wait_ready(30))
        sample = archive.sample
        for method, path, parameters, _, _ in routes(sample, "不会保存"):
            response = requests.request(method, api.url + path, params=None if method == "POST" else parameters,
                                        json=parameters if method == "POST" else None,
                                        headers=archive.auth("admin"), timeout=30)
            assert response.status_code == 503, (path, response.text)
            body = response.json()
            assert set(body) - {"msg", "code"} == {"error", "reason", "request_id"}, body
            assert body["error"] == "audit_unavailable" and "not acknowledged" in body["reason"]
        assert requests.get(api.url + "/healthz", timeout=10).status_code == 200  # not audited, answered
        metrics = requests.get(api.url + "/metrics", timeout=10).text
        assert "wxarchive_audit_failures_total 14.0" in metrics, metrics
        # doSave was refused before it changed anything
        assert not any(r.word == "不会保存" for r in archive.worker.keywords.rules.values())
    finally:
        archive.loop.run(api.stop())


def test_insecure_needs_no_token_on_loopback_and_every_record_says_insecure(archive: Archive) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        ApiService(dataclasses.replace(archive.settings, api_host="0.0.0.0"), insecure=True)
    api = ApiService(archive.settings, insecure=True, port=0)
    archive.loop.run(api.start())
    try:
        response = requests.get(api.url + "/api/v1/accounts", timeout=30)
        assert response.status_code == 200 and len(response.json()["accounts"]) == 3
    finally:
        archive.loop.run(api.stop())
    (record,) = [r for r in archive.audit_records() if r.request_id == response.headers["X-Request-Id"]]
    assert (record.principal, record.role, record.token_id, record.action) == ("insecure", "admin", "", "accounts.list")


# -- the SCRM's endpoints ---------------------------------------------------------------------------------------

def test_the_scrm_endpoints_answer_in_the_seed_shapes_and_agree_with_v_last_messages(archive: Archive) -> None:
    account = archive.sample["account"]
    private = archive.get("/wechat_api/message/findLastMsgList", "viewer", status=1, uin=account).json()
    assert list(private) == list(PRIVATE_ANSWER) and list(private["data"]) == list(PRIVATE_ANSWER["data"])
    assert (private["msg"], private["code"], private["data"]["delData"]) == ("查询成功", 200, [])
    seed_item = PRIVATE_ANSWER["data"]["lastMsgList"][0]
    kinds = set()
    for item in private["data"]["lastMsgList"]:
        assert shape(item) == shape(like_seed(seed_item, item)), item
        kinds.add("type" in orjson.loads(item["lastMsg"]))
    assert kinds == {True, False}, "both a text and a media last message were compared"
    truth = archive.query(f"""
        SELECT conversation, toUnixTimestamp64Milli(last_time), last_identity, last_text, last_sender, message_count
        FROM wxarchive.v_last_messages WHERE account = '{account}' AND NOT is_group
        ORDER BY last_time DESC, conversation DESC""")
    assert [(i["userName"], i["time"], orjson.loads(i["lastMsg"])["msgId"], orjson.loads(i["lastMsg"])["content"],
             orjson.loads(i["lastMsg"])["fromUserName"]) for i in private["data"]["lastMsgList"]] == [
        row[:5] for row in truth]

    groups = archive.get("/wechat_api/message/findLastMsgList", "viewer", adminUserId=1, uin=account, isRoom=0,
                         page=1, wechatContactName="").json()
    assert isinstance(groups, list) and groups
    for item in groups:
        assert shape(item) == shape(like_seed(GROUP_ITEM, item)), item
    group_truth = archive.query(f"""
        SELECT conversation, toUnixTimestamp64Milli(last_time), last_identity FROM wxarchive.v_last_messages
        WHERE account = '{account}' AND is_group ORDER BY last_time DESC, conversation DESC""")
    assert [(i["userName"], i["time"], orjson.loads(i["lastMsg"])["msgId"]) for i in groups] == [
        tuple(row) for row in group_truth[:20]]
    page2 = archive.get("/wechat_api/message/findLastMsgList", "viewer", uin=account, page=2, pageSize=2).json()
    assert [i["userName"] for i in page2] == [row[0] for row in group_truth[2:4]]
    named = groups[0]["nickName"]
    by_name = archive.get("/wechat_api/message/findLastMsgList", "viewer", uin=account, page=1,
                          wechatContactName=named[1:3] if len(named) > 2 else named).json()
    assert groups[0]["userName"] in [i["userName"] for i in by_name]

    group = archive.sample["group"]
    encoded = archive.get("/wechat_api/chatroom/getMember", "viewer", uin=account, userName=account,
                          charRoomId=group)
    assert encoded.headers["content-type"].startswith("application/json")
    members = orjson.loads(orjson.loads(encoded.content))  # a JSON string holding the array, as in the seed
    assert members and all(shape(m) == shape(MEMBER) for m in members)
    senders = {row[0] for row in archive.query(f"SELECT DISTINCT sender FROM wxarchive.v_messages WHERE "
                                               f"account = '{account}' AND conversation = '{group}'")}
    assert senders <= {m["userName"] for m in members}

    member = archive.sample["member"]
    detail = archive.get("/wechat_api/wechatContact/ipadGetMemberDetail", "viewer", chatRoomName=group, uin=account,
                         userName=member).json()
    assert (detail["msg"], detail["code"], detail["data"]["userName"]) == ("获取群成员详情成功!", 200, member)
    count = archive.get("/wechat_api/chatroom/getGroupCount", "viewer", uin=account, chatRoomId=group).json()
    assert count["msg"] == "请求发送成功!" and count["code"] == 200 and count["data"] >= 1
    unknown = archive.get("/wechat_api/chatroom/getGroupCount", "viewer", uin=account, chatRoomId="0@chatroom")
    assert unknown.status_code == 404 and unknown.json()["code"] == 404 and unknown.json()["msg"]


def test_dosave_puts_the_word_on_the_workers_live_list_within_seconds_and_delete_takes_it_off(
        archive: Archive) -> None:
    word = f"暗语{uuid.uuid4().hex[:6]}"
    key = f"deny:fuzzy:{word}"
    began = time.monotonic()
    saved = archive.get("/wechat_api/chatroom/doSave", "moderator", keyword=word)
    assert saved.json() == {"msg": "成功", "code": 200}
    while key not in archive.worker.keywords.rules:
        assert time.monotonic() - began < 10, "the worker did not apply doSave's word within 10 s"
        time.sleep(0.1)
    listed = archive.get("/wechat_api/sensitive/list", "moderator").json()
    assert listed["code"] == 200 and word in [w["keyword"] for w in listed["data"]]
    assert archive.get("/wechat_api/sensitive/delete", "moderator", keyword=word).json() == {
        "msg": "删除成功!", "code": 200}
    began = time.monotonic()
    while key in archive.worker.keywords.rules:
        assert time.monotonic() - began < 10, "the worker did not drop the deleted word within 10 s"
        time.sleep(0.1)


# -- the native API ------------------------------------------------------------------------------------------------

def _callback(account: str, peer: str, text: str, new_msg_id: int) -> bytes:
    return orjson.dumps({"wcId": account, "account": "17200000000", "messageType": "60001", "data": {
        "wId": "w-test", "fromUser": peer, "toUser": account, "msgId": new_msg_id % 10**9, "newMsgId": new_msg_id,
        "timestamp": int(time.time()), "content": text, "self": False}})


def test_conversation_pages_stay_stable_while_new_messages_arrive(archive: Archive) -> None:
    account = archive.sample["account"]
    path = f"/api/v1/accounts/{account}/conversations"
    before = [c["conversation"] for c in archive.get(path, "viewer", limit=500).json()["conversations"]]
    assert len(before) > 6
    seen: list[str] = []
    page = archive.get(path, "viewer", limit=3).json()
    rounds = 0
    while True:
        seen += [c["conversation"] for c in page["conversations"]]
        if page["next_cursor"] is None:
            break
        if rounds < 2:  # new messages: in a conversation already shown, and in a new conversation
            rounds += 1
            total = archive.query("SELECT count() FROM wxarchive.v_messages")[0][0]
            new_id = 7_000_000_000_000_000_000 + int(time.time() * 1000) * 10 + rounds
            archive.loop.run(publish_raw(archive.settings, [
                _callback(account, seen[0], "又一条", new_id),
                _callback(account, f"wxid_newcomer{uuid.uuid4().hex[:6]}", "你好", new_id + 5)]))
            archive.loop.run(_until(lambda: _count(archive.sink, "SELECT count() FROM wxarchive.v_messages"),
                                    total + 2, 60))
        page = archive.get(path, "viewer", limit=3, cursor=page["next_cursor"]).json()
    assert seen == before, "keyset pages repeat or skip conversations when new messages arrive"
    after = [c["conversation"] for c in archive.get(path, "viewer", limit=500).json()["conversations"]]
    assert after[0].startswith("wxid_newcomer") and len(after) == len(before) + 2


def test_a_transcript_pages_both_ways_and_around_a_message(archive: Archive) -> None:
    s = archive.sample
    path = f"/api/v1/accounts/{s['account']}/conversations/{s['group']}/messages"
    everything = archive.get(path, "viewer", limit=500).json()["messages"]
    ids = [m["identity"] for m in everything]
    assert len(ids) > 8 and [m["time_ms"] for m in everything] == sorted(m["time_ms"] for m in everything)
    latest = archive.get(path, "viewer", limit=4).json()
    assert [m["identity"] for m in latest["messages"]] == ids[-4:] and latest["has_more_before"]
    older = archive.get(path, "viewer", limit=4, before=latest["before_cursor"]).json()
    assert [m["identity"] for m in older["messages"]] == ids[-8:-4]
    newer = archive.get(path, "viewer", limit=4, after=older["after_cursor"]).json()
    assert [m["identity"] for m in newer["messages"]] == ids[-4:] and not newer["has_more_after"]
    around = archive.get(path, "viewer", around=s["identity"], n=2).json()
    where = ids.index(s["identity"])
    assert [m["identity"] for m in around["messages"]] == ids[max(0, where - 2): where + 3]
    wrong = archive.get(path, "viewer", before=archive.get(f"/api/v1/accounts/{s['account']}/conversations",
                                                            "viewer", limit=1).json()["next_cursor"])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_cursor"


def test_one_message_comes_with_its_raw_callback_and_kafka_coordinates(archive: Archive) -> None:
    s = archive.sample
    evidence = archive.get(f"/api/v1/accounts/{s['account']}/messages/{s['identity']}", "compliance").json()
    assert evidence["message"]["identity"] == s["identity"] and evidence["message"]["new_msg_id"] == s["identity"]
    raw = evidence["raw"]
    assert raw["topic"] == RAW.name(archive.settings)
    records = archive.loop.run(read_topic(archive.settings.kafka_bootstrap, raw["topic"]))
    (record,) = [r for r in records if (r.partition, r.offset) == (raw["partition"], raw["offset"])]
    assert base64.b64decode(raw["body_base64"]) == record.value and raw["body_text"] == record.value.decode()
    assert s["identity"] in raw["body_text"] and raw["key"] == record.key.decode()


def test_sql_is_capped_and_refusals_say_why(archive: Archive) -> None:
    def sql(query: str, role: str = "analyst") -> requests.Response:
        return requests.post(archive.url + "/api/v1/sql", json={"query": query}, headers=archive.auth(role),
                             timeout=60)

    ok = sql("SELECT account, count() AS n FROM wxarchive.v_messages GROUP BY account ORDER BY account").json()
    assert [c["name"] for c in ok["columns"]] == ["account", "n"] and ok["row_count"] == 3
    assert sum(int(row[1]) for row in ok["rows"]) == archive.query("SELECT count() FROM wxarchive.v_messages")[0][0]
    too_many = sql("SELECT number FROM system.numbers LIMIT 5000")
    assert too_many.status_code == 413 and "1000 rows" in too_many.json()["reason"]
    too_big = sql("SELECT repeat('x', 10000) FROM system.numbers LIMIT 500")
    assert too_big.status_code == 413 and "bytes" in too_big.json()["reason"]
    outside = sql("SELECT * FROM file('/etc/hostname', 'LineAsString')")
    assert outside.status_code == 403 and "outside the archive" in outside.json()["reason"]
    formatted = sql("SELECT 1 FORMAT CSV")
    assert formatted.status_code == 400 and "FORMAT" in formatted.json()["reason"]
    typo = sql("SELEC 1")
    assert typo.status_code == 400 and "Syntax error" in typo.json()["reason"]
    unknown = sql("SELECT * FROM wxarchive.nothing_here")
    assert unknown.status_code == 404 and "nothing_here" in unknown.json()["reason"], unknown.text
    # the audit log and the principals are compliance's and admin's, through SQL too
    for query in ("SELECT count() FROM wxarchive.v_audit_log", "SELECT * FROM wxarchive.principals",
                  "SELECT * FROM loop('wxarchive', concat('audit', '_log')) LIMIT 1",
                  "SELECT * FROM merge('wxarchive', '^a.dit')"):
        refused = sql(query)
        assert refused.status_code == 403 and "may not read" in refused.json()["reason"] or \
            "by name" in refused.json()["reason"], (query, refused.text)
    assert sql("SELECT count() FROM wxarchive.v_audit_log", "admin").status_code == 200


def test_the_audit_log_reads_back_newest_first_by_cursor(archive: Archive) -> None:
    archive.get("/api/v1/accounts", "viewer")
    time.sleep(1.5)  # the sink writes the audit topic into audit_log in batches
    first = archive.get("/api/v1/audit", "compliance", limit=5).json()
    assert len(first["records"]) == 5 and first["next_cursor"]
    times = [r["time_ms"] for r in first["records"]]
    assert times == sorted(times, reverse=True)
    second = archive.get("/api/v1/audit", "compliance", limit=5, cursor=first["next_cursor"]).json()
    assert not {r["id"] for r in first["records"]} & {r["id"] for r in second["records"]}
    assert second["records"][0]["time_ms"] <= times[-1]
    creates = archive.get("/api/v1/audit", "admin", action="tokens.create", limit=100).json()["records"]
    assert {r["parameters"]["name"] for r in creates} >= {"test-viewer", "test-revoked"}


def test_errors_are_json_with_a_reason_and_health_needs_no_token(archive: Archive) -> None:
    nowhere = requests.get(archive.url + "/api/v1/nowhere", timeout=10)
    assert nowhere.status_code == 404 and nowhere.json()["reason"].startswith("no route GET /api/v1/nowhere")
    wrong_method = requests.delete(archive.url + "/api/v1/accounts", timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    invalid = archive.get(f"/api/v1/accounts/{archive.sample['account']}/conversations", "viewer", limit=0)
    assert invalid.status_code == 422 and "limit" in invalid.json()["reason"]
    scrm = archive.get("/wechat_api/chatroom/getGroupCount", None, chatRoomId="x")
    assert scrm.status_code == 401 and scrm.json()["code"] == 401 and scrm.json()["msg"]
    assert requests.get(archive.url + "/healthz", timeout=10).json() == {"alive": True}
    assert requests.get(archive.url + "/readyz", timeout=10).json()["ready"] is True
    metrics = requests.get(archive.url + "/metrics", timeout=10).text
    assert 'wxarchive_api_requests_total{method="GET",route="/api/v1/accounts/{account}/conversations",status="422"}' \
        in metrics
    assert "wxarchive_api_request_seconds_bucket" in metrics and "wxarchive_audit_records_total" in metrics
    spec = requests.get(archive.url + "/openapi.json", timeout=10).json()
    assert "/wechat_api/message/findLastMsgList" in spec["paths"] and "HTTPBearer" in spec["components"][
        "securitySchemes"]
    assert requests.get(archive.url + "/docs", timeout=10).status_code == 200


# -- Schemathesis ---------------------------------------------------------------------------------------------------

def test_schemathesis_finds_no_server_error_but_503(archive: Archive) -> None:
    """Generated requests to every operation of /openapi.json, derandomized: no 5xx but 503, and every answer as
    the document declares it (status, content type, body schema)."""
    import schemathesis
    from schemathesis.core.result import Ok
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(archive.url + "/openapi.json")
    headers = archive.auth("admin")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=25, derandomize=True, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call(headers=headers, timeout=60)
            statuses[response.status_code] += 1
            where = f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}"
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(f"{where} {response.text[:300]}")
            try:
                case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                          response_schema_conformance], headers=headers)
            except Exception as exc:  # schemathesis raises its failures grouped; each says what did not conform
                failures.append(f"{where}: {str(exc)[:500]}")

        check()
    assert not failures, "\n".join(failures[:20])
    assert statuses[200] > 50 and not statuses[401], statuses  # the token was sent and the routes answered


def test_admins_make_list_and_revoke_tokens_through_the_api_each_change_audited_once(archive: Archive) -> None:
    def made(role: str, name: str, as_role: str = "admin") -> requests.Response:
        return requests.post(archive.url + "/api/v1/tokens", json={"name": name, "role": role},
                             headers=archive.auth(as_role), timeout=60)

    name = f"api-made-{uuid.uuid4().hex[:6]}"
    created = made("viewer", name)
    assert created.status_code == 201, created.text
    body = created.json()
    token, token_id = body["token"], body["token_id"]
    assert token.startswith("wxa_") and body["role"] == "viewer" and body["revoked_at_ms"] is None
    assert body["created_by"] == archive.names["admin"]
    deadline = time.monotonic() + 10  # the new principal reaches the API's store within seconds
    while requests.get(archive.url + "/api/v1/accounts", headers={"Authorization": f"Bearer {token}"},
                       timeout=60).status_code != 200:
        assert time.monotonic() < deadline, "a token made through the API was not let in"
        time.sleep(0.2)
    listed = archive.get("/api/v1/tokens", "admin").json()["tokens"]
    mine = [t for t in listed if t["token_id"] == token_id]
    assert mine and mine[0]["name"] == name and "token" not in mine[0] and token not in str(listed)

    for refused in (made("admin", "escalation", as_role="compliance"), made("viewer", "x", as_role="viewer"),
                    archive.get("/api/v1/tokens", "analyst")):
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert made("emperor", "x").status_code == 422 and made("viewer", "").status_code == 422
    unknown = requests.delete(archive.url + "/api/v1/tokens/nobody-at-all", headers=archive.auth("admin"), timeout=60)
    assert unknown.status_code == 404 and unknown.json()["reason"]

    revoked = requests.delete(archive.url + f"/api/v1/tokens/{token_id}", headers=archive.auth("admin"), timeout=60)
    assert revoked.status_code == 200 and revoked.json()["revoked_at_ms"] is not None
    deadline = time.monotonic() + 10
    while requests.get(archive.url + "/api/v1/accounts", headers={"Authorization": f"Bearer {token}"},
                       timeout=60).status_code != 401:
        assert time.monotonic() < deadline, "a token revoked through the API was still let in"
        time.sleep(0.2)

    ids = {created.headers["X-Request-Id"]: "tokens.create", revoked.headers["X-Request-Id"]: "tokens.revoke"}
    records = [r for r in archive.audit_records() if r.request_id in ids]
    assert sorted(r.action for r in records) == ["tokens.create", "tokens.revoke"]  # one each
    for record in records:
        assert record.parameters["token_id"] == token_id and record.role == "admin"
        assert record.status == (201 if record.action == "tokens.create" else 200)
