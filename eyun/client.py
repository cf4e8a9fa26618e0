"""Async E云 API client.

getContact is the hot path of enrichment, and the API asks callers to keep it gentle: at most 20 ids a call
and a random 300–800 ms between calls. So lookups for one login instance (`wId`) are coalesced: concurrent
requests for the same id share one answer, ids wait a few milliseconds to fill a batch of up to 20, and
batches go out one at a time, paced. Every call retries `1001` answers and timeouts with backoff, and a
circuit breaker stops calling while the API keeps failing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from eyun.breaker import BreakerState, CircuitBreaker
from eyun.errors import EyunApiError, EyunError, EyunProtocolError, EyunTimeout, EyunTransportError, EyunUnavailable
from schemas.eyun_api import (
    FAILURE,
    GET_CONTACT_MAX_IDS,
    GET_CONTACT_PACING_S,
    SUCCESS,
    AddressList,
    ChatRoomInfo,
    ChatRoomMember,
    Contact,
    LoginWx,
    SentMessage,
)

__all__ = ["EyunClient"]

log = logging.getLogger("wxarchive.eyun")


@dataclass
class ClientStats:
    calls: int = 0
    failures: int = 0
    retries: int = 0
    rejected_by_breaker: int = 0
    contacts_requested: int = 0
    contacts_coalesced: int = 0


@dataclass
class _ContactBatcher:
    """The getContact queue of one login instance."""

    pending: dict[str, asyncio.Future[Contact | None]] = field(default_factory=dict)
    in_flight: dict[str, asyncio.Future[Contact | None]] = field(default_factory=dict)
    next_call_at: float = 0.0
    task: asyncio.Task[None] | None = None


class EyunClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        pacing: tuple[float, float] = GET_CONTACT_PACING_S,
        batch_window: float = 0.02,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.pacing = pacing
        self.batch_window = batch_window
        self.breaker = breaker or CircuitBreaker()
        self.stats = ClientStats()
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._batchers: dict[str, _ContactBatcher] = {}

    async def __aenter__(self) -> EyunClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for batcher in self._batchers.values():
            if batcher.task is not None:
                batcher.task.cancel()
        self._batchers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def breaker_state(self) -> BreakerState:
        return self.breaker.state

    # -- one call ------------------------------------------------------------------------------------

    async def call(self, endpoint: str, payload: dict[str, Any]) -> Any:
        """POST `payload` to `endpoint` and return `data`, retrying failures; raises a typed EyunError."""
        attempt = 0
        while True:
            if not self.breaker.allow():
                self.stats.rejected_by_breaker += 1
                raise EyunUnavailable(endpoint, "circuit breaker open after repeated failures")
            try:
                data = await self._post(endpoint, payload)
            except (EyunApiError, EyunTimeout, EyunTransportError) as exc:
                self.breaker.failure()
                self.stats.failures += 1
                if attempt >= self.retries or self.breaker.state is not BreakerState.CLOSED:
                    raise
                attempt += 1
                self.stats.retries += 1
                delay = self.backoff * 2 ** (attempt - 1) * (0.5 + self._rng.random())
                log.debug("retrying E云 call", extra={"endpoint": endpoint, "attempt": attempt, "error": str(exc)})
                await asyncio.sleep(delay)
                continue
            self.breaker.success()
            return data

    async def _post(self, endpoint: str, payload: dict[str, Any]) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": self._token, "Content-Type": "application/json"})
        self.stats.calls += 1
        try:
            async with self._session.post(f"{self.base_url}/{endpoint}", data=orjson.dumps(payload),
                                          timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                body = await response.read()
                if response.status != 200:
                    raise EyunTransportError(endpoint, f"HTTP {response.status}")
        except TimeoutError:
            raise EyunTimeout(endpoint, f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise EyunTransportError(endpoint, f"{type(exc).__name__}: {exc}") from None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise EyunTransportError(endpoint, f"answer is not JSON: {body[:80]!r}") from None
        if not isinstance(doc, dict) or "code" not in doc:
            raise EyunProtocolError(endpoint, "answer has no code")
        code = str(doc["code"])
        if code != SUCCESS:
            raise EyunApiError(endpoint, str(doc.get("message") or doc.get("msg") or "失败"), code=code or FAILURE)
        return doc.get("data")

    # -- getContact: coalesced, batched, paced ---------------------------------------------------------

    async def get_contacts(self, w_id: str, wc_ids: Iterable[str]) -> dict[str, Contact | None]:
        """Contacts by id (None where E云 knows no such id). Failures raise the batch's EyunError."""
        ids = list(dict.fromkeys(i for i in wc_ids if i))
        batcher = self._batchers.setdefault(w_id, _ContactBatcher())
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[Contact | None]] = {}
        for wc_id in ids:
            self.stats.contacts_requested += 1
            shared = batcher.pending.get(wc_id) or batcher.in_flight.get(wc_id)
            if shared is not None:
                self.stats.contacts_coalesced += 1
                futures[wc_id] = shared
            else:
                futures[wc_id] = batcher.pending[wc_id] = loop.create_future()
        if batcher.pending and (batcher.task is None or batcher.task.done()):
            batcher.task = asyncio.create_task(self._drain(w_id, batcher))
        results = await asyncio.gather(*futures.values(), return_exceptions=True)
        out: dict[str, Contact | None] = {}
        for wc_id, result in zip(futures, results):
            if isinstance(result, BaseException):
                raise result
            out[wc_id] = result
        return out

    async def get_contact(self, w_id: str, wc_id: str) -> Contact | None:
        return (await self.get_contacts(w_id, [wc_id]))[wc_id]

    async def _drain(self, w_id: str, batcher: _ContactBatcher) -> None:
        loop = asyncio.get_running_loop()
        while batcher.pending:
            if len(batcher.pending) < GET_CONTACT_MAX_IDS:
                await asyncio.sleep(self.batch_window)  # let concurrent lookups join this batch
            wait = batcher.next_call_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            batch = dict(list(batcher.pending.items())[:GET_CONTACT_MAX_IDS])
            for wc_id in batch:
                del batcher.pending[wc_id]
            batcher.in_flight.update(batch)
            try:
                data = await self.call("getContact", {"wId": w_id, "wcId": ",".join(batch)})
                found = self._contacts(data)
                for wc_id, future in batch.items():
                    if not future.done():
                        future.set_result(found.get(wc_id))
            except EyunError as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
            finally:
                for wc_id in batch:
                    batcher.in_flight.pop(wc_id, None)
                batcher.next_call_at = loop.time() + self._rng.uniform(*self.pacing)

    @staticmethod
    def _contacts(data: Any) -> dict[str, Contact]:
        if data is None:
            return {}
        if not isinstance(data, list) or not all(isinstance(c, dict) and c.get("userName") for c in data):
            raise EyunProtocolError("getContact", "data is not a list of contacts")
        return {c["userName"]: Contact.parse(c) for c in data}

    # -- the other endpoints -------------------------------------------------------------------------

    async def init_address_list(self, w_id: str) -> None:
        await self.call("initAddressList", {"wId": w_id})

    async def get_address_list(self, w_id: str) -> AddressList:
        data = await self.call("getAddressList", {"wId": w_id})
        if not isinstance(data, dict):
            raise EyunProtocolError("getAddressList", "data is not an object")
        return AddressList.parse(data)

    async def query_login_wx(self) -> list[LoginWx]:
        data = await self.call("queryLoginWx", {})
        return [LoginWx.parse(d) for d in _list_of_objects("queryLoginWx", data)]

    async def send_text(self, w_id: str, wc_id: str, content: str, at: Iterable[str] = ()) -> SentMessage:
        """Send text; with `at` (wxids) in a group, `content` must itself contain the "@nickname" text."""
        payload: dict[str, Any] = {"wId": w_id, "wcId": wc_id, "content": content}
        mentions = [m for m in at if m]
        if mentions:
            payload["at"] = ",".join(mentions)
        data = await self.call("sendText", payload)
        if not isinstance(data, dict):
            raise EyunProtocolError("sendText", "data is not an object")
        return SentMessage.parse(data)

    async def get_chat_room_info(self, w_id: str, chat_room_id: str) -> ChatRoomInfo | None:
        data = await self.call("getChatRoomInfo", {"wId": w_id, "chatRoomId": chat_room_id})
        rooms = _list_of_objects("getChatRoomInfo", data)
        return ChatRoomInfo.parse(rooms[0]) if rooms else None

    async def get_chat_room_member(self, w_id: str, chat_room_id: str) -> list[ChatRoomMember]:
        data = await self.call("getChatRoomMember", {"wId": w_id, "chatRoomId": chat_room_id})
        return [ChatRoomMember.parse(m) for m in _list_of_objects("getChatRoomMember", data)]


def _list_of_objects(endpoint: str, data: Any) -> list[dict[str, Any]]:
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise EyunProtocolError(endpoint, "data is not a list of objects")
    return data
