"""The access layer on the real broker: tokens through the CLI, a live PrincipalStore seeing a revoke within
seconds, the audit log acknowledged or failing closed, and the sink writing both topics into their tables."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from access.audit import AuditLog
from access.caller import Caller
from access.principals import PrincipalStore, publish_principal
from access.roles import Role
from access.token_admin import create_token, revoke_token
from commands.main import main
from schemas.access import AuditRecord
from sinks.sink import Sink
from tests.support import read_topic, until
from wxarchive.config import Settings
from wxarchive.errors import AuditUnavailable
from wxarchive.net import free_ports
from wxarchive.topics import AUDIT, PRINCIPALS, topic_config

TopicName = Callable[[str], str]


def access_settings(settings: Settings, topic_name: TopicName, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **{"topic_prefix": topic_name("acc"), "kafka_partitions": 2, **changes})


def cli(s: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["tokens", *args, "--kafka-bootstrap", s.kafka_bootstrap, "--topic-prefix", s.topic_prefix,
                 "--data-dir", str(s.data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def test_tokens_create_list_revoke_through_the_cli(settings: Settings, topic_name: TopicName,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    s = access_settings(settings, topic_name)
    code, out, err = cli(s, capsys, "create", "--name", "alice", "--role", "compliance")
    token = out.strip()
    assert code == 0 and token.startswith("wxa_") and "\n" not in token  # stdout is the token alone
    assert "shown only this once and cannot be shown again" in err
    assert cli(s, capsys, "create", "--name", "alice", "--role", "viewer")[0] == 0
    assert cli(s, capsys, "create", "--name", "bob", "--role", "admin")[0] == 0

    code, listed, err = cli(s, capsys, "list")
    lines = listed.splitlines()
    assert code == 0 and lines[0].split() == ["TOKEN_ID", "NAME", "ROLE", "CREATED", "REVOKED"] and len(lines) == 4
    assert err.strip() == "3 tokens, 3 live" and token not in listed
    as_json = [orjson.loads(line) for line in cli(s, capsys, "list", "--json")[1].splitlines()]
    assert [(p["name"], p["role"], p["revoked_at"]) for p in as_json] == [
        ("alice", "compliance", None), ("alice", "viewer", None), ("bob", "admin", None)]
    assert all("token_sha256" not in p for p in as_json)

    code, _, err = cli(s, capsys, "revoke", "alice")  # two live tokens named alice
    assert code == 2 and "2 live tokens are named 'alice'" in err and "revoke one by its token_id" in err
    code, out, _ = cli(s, capsys, "revoke", as_json[0]["token_id"])
    assert code == 0 and out.startswith(f"revoked token {as_json[0]['token_id']} of 'alice' (compliance)")
    assert cli(s, capsys, "revoke", "alice")[0] == 0  # now one live alice is left: by name
    code, _, err = cli(s, capsys, "revoke", "nobody")
    assert code == 2 and "no token has the id or name 'nobody'" in err
    code, listed, err = cli(s, capsys, "list")
    assert err.strip() == "3 tokens, 1 live" and sum(line.rstrip().endswith("Z") for line in listed.splitlines()) == 2

    # the topic holds hashes only, and every change left an audit record by the CLI's user
    principals = asyncio.run(read_topic(s.kafka_bootstrap, PRINCIPALS.name(s)))
    assert len(principals) == 5 and not any(token.encode() in (r.value or b"") for r in principals)
    audit = [AuditRecord.from_json(r.value) for r in asyncio.run(read_topic(s.kafka_bootstrap, AUDIT.name(s)))]
    assert sorted(a.action for a in audit) == ["tokens.create"] * 3 + ["tokens.revoke"] * 2
    assert all(a.principal.startswith("cli:") and a.client == "local" for a in audit)
    assert {a.parameters["token_id"] for a in audit if a.action == "tokens.revoke"} == {
        as_json[0]["token_id"], as_json[1]["token_id"]}


def test_the_topics_are_declared_as_designed(settings: Settings, topic_name: TopicName,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    s = access_settings(settings, topic_name)
    assert cli(s, capsys, "list")[0] == 0  # creates the principals topic

    async def connect() -> None:
        audit = AuditLog(s)
        await audit.start()  # creates the audit topic
        await audit.close()

    asyncio.run(connect())
    audit, principals = (asyncio.run(topic_config(s, t)) for t in (AUDIT, PRINCIPALS))
    assert audit["retention.ms"] == "-1" and audit["cleanup.policy"] == "delete"
    assert principals["cleanup.policy"] == "compact"


def test_a_running_store_refuses_a_revoked_token_within_seconds(settings: Settings, topic_name: TopicName) -> None:
    s = access_settings(settings, topic_name)

    async def scenario() -> float:
        audit = AuditLog(s)
        before, _ = await create_token(s, "early", Role.VIEWER, Caller.cli(), audit)  # on the topic before start
        store = PrincipalStore(s)
        assert store.lookup(before) is None  # nothing is let in before the store caught up
        await store.start()
        try:
            await store.wait_ready(30)
            assert store.ready and store.lookup(before) is not None
            token, principal = await create_token(s, "late", Role.ANALYST, Caller.cli(), audit)
            await until(lambda: _known(store, token), timeout=5)
            assert store.lookup(token) == principal
            began = time.monotonic()
            await revoke_token(s, principal.token_id, Caller.cli(), audit)
            while store.lookup(token) is not None:
                assert time.monotonic() - began < 5, "the store still lets a revoked token in after 5 s"
                await asyncio.sleep(0.05)
            assert store.lookup(before) is not None  # the others stay in
            return time.monotonic() - began
        finally:
            await store.stop()
            await audit.close()

    assert asyncio.run(scenario()) < 5


async def _known(store: PrincipalStore, token: str) -> bool:
    return store.lookup(token) is not None


def test_an_audit_record_returns_once_kafka_has_it(settings: Settings, topic_name: TopicName) -> None:
    s = access_settings(settings, topic_name)
    entry = Caller("alice", "abcdef123456", "compliance", "127.0.0.1:4000", "req-7").audit(
        "conversations.list", {"account": "wxid_a"}, 3)

    async def scenario() -> list[AuditRecord]:
        audit = AuditLog(s)
        await audit.start()
        try:
            await audit.record(entry)
        finally:
            await audit.close()
        assert audit.metrics.written._value.get() == 1 and audit.metrics.failures._value.get() == 0
        return [AuditRecord.from_json(r.value) for r in await read_topic(s.kafka_bootstrap, AUDIT.name(s))]

    assert asyncio.run(scenario()) == [entry]


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_the_audit_log_fails_closed_promptly_when_kafka_cannot_be_reached(settings: Settings, topic_name: TopicName,
                                                                          kind: str) -> None:
    """Nothing listens (refused at once), or something accepts connections and never answers (the timeout)."""
    listener = socket.socket()
    if kind == "silent":
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
    else:
        (port,) = free_ports(1)
    s = access_settings(settings, topic_name, kafka_bootstrap=f"127.0.0.1:{port}")

    async def scenario() -> None:
        audit = AuditLog(s, timeout=1.0)
        await audit.start()  # no error: the API starts while Kafka is away and fails requests instead
        try:
            for _ in range(2):  # and again: each record tries afresh
                began = time.monotonic()
                with pytest.raises(AuditUnavailable, match="was not acknowledged by Kafka .* the request was refused"):
                    await audit.record(Caller.cli().audit("sql.query", {"sql": "SELECT 1"}))
                assert time.monotonic() - began < 3
            assert audit.metrics.failures._value.get() == 2 and audit.metrics.written._value.get() == 0
        finally:
            await audit.close()

    try:
        asyncio.run(scenario())
    finally:
        listener.close()
    assert AuditUnavailable.http_status == 503


def test_the_sink_writes_the_audit_log_and_principals(settings: Settings, topic_name: TopicName,
                                                      tmp_path: Path) -> None:
    s = access_settings(settings, topic_name, clickhouse_dsn=f"chdb://{tmp_path / 'clickhouse'}",
                        sink_batch_seconds=0.3)

    async def scenario() -> None:
        audit = AuditLog(s)
        token, alice = await create_token(s, "alice", Role.COMPLIANCE, Caller.cli(), audit)
        await create_token(s, "bob", Role.VIEWER, Caller.cli(), audit)
        await revoke_token(s, "bob", Caller.cli(), audit)
        read = Caller.of(alice, "10.1.2.3:5555", "req-42").audit("audit.read", {"since": "2026-01-01"}, 0, 200)
        await audit.record(read)
        await audit.record(read)  # the same record twice (a retry that did land): one row as queries see it
        await publish_principal(s, alice)  # a replayed older state changes nothing
        await audit.close()

        sink = Sink(s)
        await sink.start()
        task = asyncio.create_task(sink.run())
        try:
            q = sink.clickhouse.query_rows

            async def landed() -> bool:
                return bool(await q("SELECT (SELECT count() FROM wxarchive.v_audit_log) = 4 AND "
                                    "(SELECT countIf(revoked) FROM wxarchive.v_principals) = 1") == [(True,)])
            await until(landed, timeout=60)
            await asyncio.sleep(0.5)  # anything late (a repeat) would land now
            assert await q("SELECT action, count() FROM wxarchive.v_audit_log GROUP BY action ORDER BY action") == [
                ("audit.read", 1), ("tokens.create", 2), ("tokens.revoke", 1)]
            assert await q("SELECT principal, token_id, role, JSONExtractString(parameters, 'since'), result_count, "
                           "status, request_id, client FROM wxarchive.v_audit_log WHERE action = 'audit.read'") == [
                ("alice", alice.token_id, "compliance", "2026-01-01", 0, 200, "req-42", "10.1.2.3:5555")]
            assert await q("SELECT name, role, revoked, created_by LIKE 'cli:%' FROM wxarchive.v_principals "
                           "ORDER BY name") == [("alice", "compliance", False, True), ("bob", "viewer", True, True)]
            stored = await q("SELECT * FROM wxarchive.principals")
            assert stored and not any(token in str(row) for row in stored)  # the hash only, never the token
            assert await q(f"SELECT count() FROM wxarchive.principals WHERE token_sha256 = '{alice.token_sha256}'")
        finally:
            sink.stop()
            await task
            await sink.close()

    asyncio.run(scenario())
