"""A fake E云 API, faithful to the seed documents, for tests, benchmarks and `wxarchive up` without E云.

It serves getContact, initAddressList, getAddressList, queryLoginWx, sendText, getChatRoomInfo and
getChatRoomMember with the documents' response shapes and string codes ("1000"/"1001"), from a generated
Directory. Knobs inject failures, latency, timeouts and pacing enforcement; every call is recorded (time,
endpoint, body, answer code) so tests can assert batching and pacing. Admin endpoints live under /_fake/.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson
from aiohttp import web

from eyun.directory import Account, Directory
from schemas.eyun_api import FAILURE, GET_CONTACT_MAX_IDS, GET_CONTACT_PACING_S, SUCCESS
from wxarchive.http_server import serve_app

__all__ = ["DEFAULT_TOKEN", "FakeEyun", "Knobs", "serve"]

DEFAULT_TOKEN = "fake-eyun-token"


@dataclass
class Knobs:
    failure_rate: float = 0.0       # share of calls answered {"code":"1001"}
    fail_next: int = 0              # the next N calls answer 1001 (deterministic, for tests)
    hang_next: int = 0              # the next N calls hang for hang_s
    latency_ms: float = 0.0         # added to every answer
    jitter_ms: float = 0.0          # plus up to this much, at random
    timeout_rate: float = 0.0       # share of calls that hang for hang_s before answering
    hang_s: float = 30.0
    enforce_pacing: bool = False    # answer 1001 to getContact calls closer than min_interval_ms
    min_interval_ms: float = GET_CONTACT_PACING_S[0] * 1000

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f for f in fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown knob {key!r}; knobs are {', '.join(names)}")
            setattr(self, key, type(getattr(self, key))(value))


@dataclass
class Call:
    at: float            # time.monotonic() when the call arrived
    endpoint: str
    body: dict[str, Any]
    code: str
    pacing_violation: bool = False


@dataclass
class FakeEyun:
    directory: Directory
    token: str = DEFAULT_TOKEN
    knobs: Knobs = field(default_factory=Knobs)
    seed: int = 1
    calls: list[Call] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"fake-eyun-{self.seed}")
        self._initialized: set[str] = set()
        self._last_contact_call: dict[str, float] = {}
        self._next_msg_id = 2_562_652_205

    # -- wiring --------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        for endpoint in ("getContact", "initAddressList", "getAddressList", "queryLoginWx", "sendText",
                         "getChatRoomInfo", "getChatRoomMember"):
            app.router.add_post(f"/{endpoint}", self._handler(endpoint))
        app.router.add_get("/_fake/calls", self._admin_calls)
        app.router.add_get("/_fake/knobs", self._admin_knobs)
        app.router.add_post("/_fake/knobs", self._admin_knobs)
        app.router.add_post("/_fake/reset", self._admin_reset)
        app.router.add_post("/_fake/relogin", self._admin_relogin)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "accounts": len(self.directory.accounts), "calls": len(self.calls)})

    def _handler(self, endpoint: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.Response:
            arrived = time.monotonic()
            try:
                body = orjson.loads(await request.read() or b"{}")
                if not isinstance(body, dict):
                    raise ValueError
            except ValueError:
                body = {}
                answer = _fail("参数错误")
            else:
                answer = await self._answer(endpoint, body, request.headers.get("Authorization", ""), arrived)
            return web.Response(body=orjson.dumps(answer), content_type="application/json")

        return handle

    async def _answer(self, endpoint: str, body: dict[str, Any], auth: str, arrived: float) -> dict[str, Any]:
        knobs = self.knobs
        violation = False
        if endpoint == "getContact":
            w_id = str(body.get("wId", ""))
            last = self._last_contact_call.get(w_id)
            violation = last is not None and (arrived - last) * 1000 < knobs.min_interval_ms
            self._last_contact_call[w_id] = arrived
        delay = (knobs.latency_ms + self._rng.random() * knobs.jitter_ms) / 1000
        if knobs.hang_next > 0 or (knobs.timeout_rate and self._rng.random() < knobs.timeout_rate):
            knobs.hang_next = max(0, knobs.hang_next - 1)
            delay += knobs.hang_s
        if delay:
            await asyncio.sleep(delay)
        if auth != self.token:
            answer = _fail("Authorization无效")
        elif knobs.fail_next > 0 or (knobs.failure_rate and self._rng.random() < knobs.failure_rate):
            knobs.fail_next = max(0, knobs.fail_next - 1)
            answer = _fail("失败")
        elif violation and knobs.enforce_pacing:
            answer = _fail("请求过于频繁，请稍后再试")
        else:
            answer = getattr(self, "_" + endpoint)(body)
        self.calls.append(Call(arrived, endpoint, body, answer["code"], violation))
        return answer

    # -- the API -------------------------------------------------------------------------------------

    def _account_of(self, body: dict[str, Any]) -> Account | None:
        return self.directory.account_by_w_id(str(body.get("wId") or ""))

    def _getContact(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._account_of(body) is None:
            return _fail("wId不存在或已失效")
        ids = [i for i in str(body.get("wcId", "")).split(",") if i]
        if not ids:
            return _fail("wcId不能为空")
        if len(ids) > GET_CONTACT_MAX_IDS:
            return _fail(f"wcId最多{GET_CONTACT_MAX_IDS}个")
        people = self.directory.people
        return _ok([people[i].to_wire() for i in ids if i in people])

    def _initAddressList(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self._account_of(body)
        if account is None:
            return _fail("wId不存在或已失效")
        self._initialized.add(account.w_id)
        return _ok(None)

    def _getAddressList(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self._account_of(body)
        if account is None:
            return _fail("wId不存在或已失效")
        if account.w_id not in self._initialized:
            return _fail("获取通讯录列表之前，必须调用初始化通讯录列表接口")
        return _ok({"chatrooms": [g.id for g in account.groups if g.saved], "friends": list(account.friends),
                    "ghs": list(account.official_accounts), "others": []}, message="获取通讯录成功")

    def _queryLoginWx(self, body: dict[str, Any]) -> dict[str, Any]:
        return _ok([{"wcId": a.wc_id, "wId": a.w_id} for a in self.directory.accounts])

    def _sendText(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self._account_of(body)
        if account is None:
            return _fail("wId不存在或已失效")
        if not body.get("wcId") or not body.get("content"):
            return _fail("wcId和content不能为空")
        self._next_msg_id += 1
        sent = {"type": 1, "msgId": self._next_msg_id, "newMsgId": self._rng.getrandbits(63),
                "createTime": int(time.time()), "wcId": body["wcId"]}
        self.sent.append({**body, "result": sent})
        return _ok(sent, message="处理成功")

    def _getChatRoomInfo(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._account_of(body) is None:
            return _fail("wId不存在或已失效")
        info = self.directory.room_info(str(body.get("chatRoomId", "")))
        return _ok([info.to_wire()] if info else [])

    def _getChatRoomMember(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._account_of(body) is None:
            return _fail("wId不存在或已失效")
        return _ok([m.to_wire() for m in self.directory.room_members(str(body.get("chatRoomId", "")))])

    # -- admin ---------------------------------------------------------------------------------------

    def relogin(self, wc_id: str) -> str:
        """A re-login gives the account a new wId, as E云 does; the old one stops working."""
        account = self.directory.account(wc_id)
        if account is None:
            raise KeyError(wc_id)
        account.w_id = str(uuid.UUID(int=self._rng.getrandbits(128)))
        account.relogin_w_id = ""  # every earlier instance stops working
        return account.w_id

    async def _admin_calls(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps([asdict(c) for c in self.calls]), content_type="application/json")

    async def _admin_knobs(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                self.knobs.update(orjson.loads(await request.read()))
            except (ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.knobs))

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.calls.clear()
        self.sent.clear()
        self.knobs = Knobs()
        return web.json_response({"ok": True})

    async def _admin_relogin(self, request: web.Request) -> web.Response:
        wc_id = str(orjson.loads(await request.read() or b"{}").get("wcId", ""))
        try:
            return web.json_response({"wcId": wc_id, "wId": self.relogin(wc_id)})
        except KeyError:
            return web.json_response({"error": f"no account {wc_id!r}"}, status=404)


def _ok(data: Any, message: str = "成功") -> dict[str, Any]:
    return {"code": SUCCESS, "message": message, "data": data}


def _fail(message: str) -> dict[str, Any]:
    return {"code": FAILURE, "message": message, "data": None}


async def serve(fake: FakeEyun, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start serving in the running loop (port 0: any free port). Returns the runner, to clean up, and the URL."""
    return await serve_app(fake.app(), host, port)
