"""The access layer without a broker: the role table, tokens and their hashes, the principals fold, the events'
JSON and the rows the sink makes of them."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from access.caller import Caller
from access.principals import Principals
from access.roles import PERMISSIONS, Permission, Role, allowed, parse_role, permissions_of
from access.token_admin import AmbiguousToken, UnknownToken, check_name, find_token
from access.tokens import TOKEN_PREFIX, hash_token, new_token, token_id, token_matches
from schemas.access import AuditRecord, Principal
from sinks.rows import AUDIT_COLUMNS, PRINCIPAL_COLUMNS, RowError, audit_row, principal_row
from sinks.schema import cluster_statements
from wxarchive.errors import ConfigError

P = Permission


def principal(name: str = "alice", role: str = "viewer", *, token: str | None = None, at: int = 1_700_000_000_000
              ) -> tuple[str, Principal]:
    token = token or new_token()
    digest = hash_token(token)
    return token, Principal(token_id(digest), name, role, digest, at, "cli:test", None, at)


def test_each_role_may_do_what_issue_13_gives_it_and_admin_everything() -> None:
    assert set(permissions_of(Role.VIEWER)) == {P.CONVERSATIONS_READ}
    assert set(permissions_of(Role.MODERATOR)) == {P.MODERATION_READ, P.KEYWORDS_READ, P.KEYWORDS_WRITE}
    # compliance reads conversations too: an officer must read what was said around a hit
    assert set(permissions_of(Role.COMPLIANCE)) == {P.SEARCH, P.EXPORT, P.HOLDS_READ, P.HOLDS_WRITE, P.AUDIT_READ,
                                                    P.CONVERSATIONS_READ}
    assert set(permissions_of(Role.ANALYST)) == {P.SQL_QUERY, P.VIEWS_READ}
    assert set(permissions_of(Role.SCRM)) == {P.CONVERSATIONS_READ, P.KEYWORDS_READ, P.KEYWORDS_WRITE}
    assert permissions_of(Role.ADMIN) == list(Permission) and set(PERMISSIONS) == set(Permission)
    # only admin manages tokens and deletes; only compliance and admin read the audit log
    assert {r for r in Role if allowed(r, P.TOKENS_WRITE) or allowed(r, P.DELETE)} == {Role.ADMIN}
    assert {r for r in Role if allowed(r, P.AUDIT_READ)} == {Role.COMPLIANCE, Role.ADMIN}


def test_roles_are_taken_by_name_and_an_unknown_one_holds_nothing() -> None:
    assert allowed("viewer", P.CONVERSATIONS_READ) and not allowed("viewer", P.SQL_QUERY)
    assert parse_role("analyst") is Role.ANALYST and parse_role("root") is None and parse_role("") is None
    assert not any(allowed(name, p) for name in ("root", "", "Admin") for p in Permission)
    assert permissions_of("superuser") == []


def test_a_token_is_prefixed_random_and_kept_only_as_its_hash() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX) and len(token) == len(TOKEN_PREFIX) + 43
        assert token[len(TOKEN_PREFIX):].replace("-", "").replace("_", "").isalnum()
    token = tokens.pop()
    digest = hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest() and len(digest) == 64
    assert token_id(digest) == digest[:12]
    assert token_matches(token, digest) and not token_matches(token + "x", digest)
    assert not token_matches("x" * 10_000, digest)


def test_the_fold_keeps_the_newest_version_and_lets_only_live_tokens_in() -> None:
    principals = Principals()
    token, alice = principal()
    principals.apply(alice.to_json())
    assert principals.active(token) == alice
    assert principals.active(new_token()) is None and principals.active("") is None and principals.active("x" * 999) is None
    revoked = alice.revoke(alice.created_at + 10)
    assert revoked.version > alice.version and revoked.revoked
    principals.apply(revoked.to_json())
    assert principals.active(token) is None
    principals.apply(alice.to_json())  # an older state replayed: the revoke stands
    assert principals.active(token) is None and principals.listing() == [revoked]
    principals.apply(None)  # a tombstone forgets nothing
    assert principals.listing() == [revoked]


@pytest.mark.parametrize("value, reason", [
    (b"{", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"token_id":"abc"}', "name is missing"),
])
def test_a_record_that_is_no_principal_says_why(value: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Principals().apply(value)


def test_a_principal_whose_id_is_not_its_hash_is_refused() -> None:
    _, alice = principal()
    forged = orjson.loads(alice.to_json()) | {"token_id": "000000000000"}
    with pytest.raises(ValueError, match="not the start of its token_sha256"):
        Principals().apply(orjson.dumps(forged))


def test_events_round_trip_through_json_without_the_token() -> None:
    token, alice = principal(role="compliance")
    assert Principal.from_json(alice.to_json()) == alice and token.encode() not in alice.to_json()
    caller = Caller.of(alice, "127.0.0.1:5000", "req-1")
    record = caller.audit("conversations.list", {"account": "wxid_a", "limit": 50}, 12)
    assert AuditRecord.from_json(record.to_json()) == record
    assert (record.principal, record.token_id, record.role, record.client, record.request_id, record.status) == (
        "alice", alice.token_id, "compliance", "127.0.0.1:5000", "req-1", 200)
    assert len(record.id) == 32 and record.time > 1_700_000_000_000
    assert Caller.cli().name.startswith("cli:") and Caller.cli().role == "admin"
    with pytest.raises(ValueError, match="parameters must be a JSON object"):
        AuditRecord.from_json(orjson.dumps(orjson.loads(record.to_json()) | {"parameters": [1]}))
    with pytest.raises(ValueError, match="status must be"):
        AuditRecord.from_json(orjson.dumps(orjson.loads(record.to_json()) | {"status": "200"}))


def _record(value: bytes | None, topic: str) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, 3, 1_700_000_000_000, 0, b"k", value, None, len(value or b""), 0, [])


def test_the_sink_makes_rows_of_audit_records_and_principals() -> None:
    _, alice = principal()
    entry = Caller.of(alice, "10.0.0.9", "r").audit("sql.query", {"sql": "SELECT 1", "a": {"z": 1, "b": 2}}, None, 200)
    row = dict(zip(AUDIT_COLUMNS, audit_row(_record(entry.to_json(), "p.audit"))))
    assert row["parameters"] == '{"a":{"b":2,"z":1},"sql":"SELECT 1"}' and row["result_count"] is None
    assert row["id"] == entry.id and row["time"].timestamp() * 1000 == pytest.approx(entry.time)
    revoked = dict(zip(PRINCIPAL_COLUMNS, principal_row(_record(alice.revoke(1_800_000_000_000).to_json(),
                                                                 "p.principals")) or []))
    assert revoked["token_sha256"] == alice.token_sha256 and revoked["revoked_at"].timestamp() == 1_800_000_000
    assert principal_row(_record(None, "p.principals")) is None
    with pytest.raises(RowError, match="audit record: action is missing"):
        audit_row(_record(b'{"id":"x","principal":"p","time":1,"status":200}', "p.audit"))


def test_revoke_finds_a_token_by_id_or_by_its_one_live_name() -> None:
    _, alice = principal("alice", at=1)
    _, alice2 = principal("alice", at=2)
    _, bob = principal("bob", at=3)
    gone = principal("carol", at=4)[1].revoke(5)
    everyone = [alice, alice2, bob, gone]
    assert find_token(everyone, "bob") == bob and find_token(everyone, alice.token_id) == alice
    with pytest.raises(AmbiguousToken, match=f"2 live tokens are named 'alice' \\({alice.token_id}, {alice2.token_id}\\)"):
        find_token(everyone, "alice")
    assert find_token([alice.revoke(9), alice2], "alice") == alice2  # a revoked namesake is no rival
    with pytest.raises(UnknownToken, match="revoked already"):
        find_token(everyone, "carol")
    with pytest.raises(UnknownToken, match="no token has the id or name 'dave'; `wxarchive tokens list` shows them"):
        find_token(everyone, "dave")
    assert UnknownToken.exit_code == AmbiguousToken.exit_code == 2
    assert (UnknownToken.http_status, AmbiguousToken.http_status) == (404, 409)


def test_a_token_name_is_trimmed_printable_and_short() -> None:
    assert check_name("  scrm-backend ") == "scrm-backend"
    for bad in ("", "   ", "a\nb", "x" * 101):
        with pytest.raises(ConfigError):
            check_name(bad)


def test_the_cluster_variant_shards_the_read_side_tables_by_their_identity() -> None:
    text = "\n".join(cluster_statements("archive"))
    assert "ENGINE = Distributed('archive', wxarchive, audit_log_local, cityHash64(id))" in text
    assert "ENGINE = Distributed('archive', wxarchive, principals_local, cityHash64(token_id))" in text
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/wxarchive/principals', '{replica}', version)" in text
