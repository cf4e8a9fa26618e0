"""Names for the archive: each message carries, as of archive time, its sender's nickname, remark and alias
and its conversation's display name (a group's name comes from getContact with the `@chatroom` id).

The cache is keyed `account|wxid` and lives on the compacted topic PREFIX.contacts: every successful
lookup is published there as a contact snapshot, and every worker loads the topic when it starts, so all
workers share one cache (like a global table) and it survives restarts. Entries older than the refresh TTL
are looked up again, but still used if the lookup fails. Misses are looked up per account through the E云
client (coalesced, at most 20 ids a call, paced per account); a batch waits at most `bound` seconds and
then goes on, those messages marked not enriched, while the lookup keeps running and fills the cache for
the messages after them. The first time an account is seen its address list warms the cache in the
background. When E云 fails, the client's circuit breaker opens and messages flow on unnamed: that is said
once per outage as a warning with the failure behind it (until then failed lookups are only counted), and its
end as an info line, because "every message archived without names" must not pass unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from eyun.client import EyunClient
from eyun.errors import EyunError, EyunUnavailable
from schemas.eyun_api import Contact
from schemas.message import ArchiveMessage

__all__ = ["Enricher", "Names", "snapshot_record"]

log = logging.getLogger("wxarchive.enrichment")
DAY_MS = 24 * 3600 * 1000
Publish = Callable[[bytes, bytes], Awaitable[None]]


@dataclass(frozen=True)
class Names:
    sender_name: str = ""
    sender_remark: str = ""
    sender_alias: str = ""
    conversation_name: str = ""
    enriched: bool = False


@dataclass
class EnrichmentStats:
    cache_hits: int = 0
    cache_misses: int = 0
    lookups: int = 0
    api_errors: int = 0
    timeouts: int = 0
    warmed_accounts: int = 0
    not_enriched: int = 0


def snapshot_record(account: str, contact: Contact, now_ms: int) -> tuple[bytes, bytes]:
    return f"{account}|{contact.userName}".encode(), orjson.dumps({**contact.to_wire(), "account": account,
                                                                   "fetched_ms": now_ms})


class Enricher:
    def __init__(self, client: EyunClient | None, publish: Publish, *, bound: float = 5.0,
                 ttl_ms: int = DAY_MS, warm: bool = True) -> None:
        self.client = client
        self.publish = publish
        self.bound = bound
        self.ttl_ms = ttl_ms
        self.warm = warm
        self.cache: dict[str, tuple[Contact, int]] = {}
        self.w_ids: dict[str, str] = {}  # account -> its latest login instance
        self.stats = EnrichmentStats()
        self._warming: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._last_failure = ""  # what E云 last answered wrong, the reason given when the breaker opens
        self._outages_told = 0  # the breaker's openings already warned of
        self._outage_open = False  # warned, and no call has succeeded since

    def load(self, key: bytes, value: bytes | None) -> None:
        """One record of the contacts topic, when the worker starts."""
        if value is None:
            self.cache.pop(key.decode(), None)
            return
        doc = orjson.loads(value)
        self.cache[key.decode()] = (Contact.parse(doc), int(doc.get("fetched_ms", 0)))

    async def enrich(self, messages: list[ArchiveMessage], waited_s: float = 0.0) -> list[Names]:
        """Names for each message. The bound counts from the oldest message's arrival at the edge (`waited_s`
        ago): a worker that is behind does not wait again for messages that have waited already, so a cold
        cache cannot slow the stream below what the lookups themselves cost."""
        if self.client is None:
            self.stats.not_enriched += len(messages)
            return [Names() for _ in messages]
        now = int(time.time() * 1000)
        for m in messages:
            if m.w_id:
                self.w_ids[m.account] = m.w_id
            if self.warm and m.account not in self._warming and m.account in self.w_ids:
                self._warming.add(m.account)
                self._spawn(self._warm(m.account))
        wanted: dict[str, set[str]] = {}
        for m in messages:
            for wxid in (m.sender, m.conversation):
                if wxid and self._fresh(m.account, wxid, now) is None:
                    wanted.setdefault(m.account, set()).add(wxid)
        self.stats.cache_misses += sum(len(ids) for ids in wanted.values())
        if wanted:
            lookups = [asyncio.ensure_future(self._lookup(account, ids)) for account, ids in wanted.items()
                       if account in self.w_ids]
            if lookups:
                done, pending = await asyncio.wait(lookups, timeout=max(0.0, self.bound - waited_s))
                if pending:
                    self.stats.timeouts += 1
                    for task in pending:  # keeps running: its answer fills the cache for later messages
                        self._background.add(task)
                        task.add_done_callback(self._background.discard)
        out = []
        for m in messages:
            sender = self._known(m.account, m.sender)
            conversation = self._known(m.account, m.conversation)
            if sender is None and conversation is None:
                self.stats.not_enriched += 1
                out.append(Names())
                continue
            self.stats.cache_hits += 1
            out.append(Names(sender_name=sender.nickName if sender else "", sender_remark=sender.remark if sender else "",
                             sender_alias=sender.aliasName if sender else "",
                             conversation_name=_display_name(conversation) if conversation else "",
                             enriched=sender is not None and (conversation is not None or not m.conversation)))
        return out

    def _fresh(self, account: str, wxid: str, now: int) -> Contact | None:
        entry = self.cache.get(f"{account}|{wxid}")
        return entry[0] if entry is not None and now - entry[1] < self.ttl_ms else None

    def _known(self, account: str, wxid: str) -> Contact | None:
        entry = self.cache.get(f"{account}|{wxid}") if wxid else None
        return entry[0] if entry is not None else None

    async def _lookup(self, account: str, ids: set[str]) -> None:
        assert self.client is not None
        self.stats.lookups += 1
        try:
            found = await self.client.get_contacts(self.w_ids[account], sorted(ids))
        except EyunError as exc:
            self._failed(exc)
            log.debug("getContact failed", extra={"account": account, "error": str(exc)})
            return
        self._answered()
        await self._remember(account, [c for c in found.values() if c is not None])

    def _failed(self, exc: EyunError) -> None:
        """Count a failed call; the first failure seen after the breaker opened warns, once per outage."""
        assert self.client is not None
        self.stats.api_errors += 1
        if not isinstance(exc, EyunUnavailable):  # "breaker open" says nothing about what went wrong
            self._last_failure = str(exc)
        breaker = self.client.breaker
        if breaker.openings > self._outages_told:
            self._outages_told = breaker.openings
            self._outage_open = True
            log.warning("E云 lookups keep failing: circuit breaker open, messages are archived without names "
                        "until E云 answers again",
                        extra={"reason": self._last_failure or str(exc), "failures_in_a_row": breaker.threshold,
                               "trial_every_s": breaker.cooldown})

    def _answered(self) -> None:
        """A call succeeded: if an outage was warned of and the breaker has closed, say it is over."""
        assert self.client is not None
        if self._outage_open and self.client.breaker.outage_began is None:
            self._outage_open = False
            log.info("E云 answers again: circuit breaker closed, lookups resume")

    async def _remember(self, account: str, contacts: list[Contact]) -> None:
        now = int(time.time() * 1000)
        for contact in contacts:
            self.cache[f"{account}|{contact.userName}"] = (contact, now)
            await self.publish(*snapshot_record(account, contact, now))

    async def _warm(self, account: str) -> None:
        """First sight of an account: look up its whole address book, paced, in the background."""
        assert self.client is not None
        w_id = self.w_ids[account]
        try:
            await self.client.init_address_list(w_id)
            book = await self.client.get_address_list(w_id)
            ids = [i for i in book.friends + book.chatrooms if f"{account}|{i}" not in self.cache]
            if ids:
                found = await self.client.get_contacts(w_id, ids)
                await self._remember(account, [c for c in found.values() if c is not None])
            self.stats.warmed_accounts += 1
            self._answered()
        except EyunError as exc:
            self._failed(exc)
            self._warming.discard(account)  # try again on a later message
            # while the breaker is open every later message retries at once: warned of already, not said again
            log.log(logging.DEBUG if isinstance(exc, EyunUnavailable) else logging.INFO,
                    "address list warm-up failed; lookups go on one by one", extra={"account": account, "error": str(exc)})

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _display_name(contact: Contact) -> str:
    return contact.remark or contact.nickName
