"""The wxarchive schema on the embedded engine: idempotent migrations, the views' semantics, the docs' SQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.schema import MIGRATIONS, cluster_statements, migrate, schema_fingerprint

DOCS = Path(__file__).parents[2] / "docs" / "clickhouse.md"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
MESSAGE_COLUMNS = ("account", "identity", "new_msg_id", "msg_id", "platform_account", "w_id", "type_code", "type_name",
                   "native_type", "is_group", "conversation", "conversation_name", "sender", "sender_name",
                   "sender_remark", "sender_alias", "receiver", "is_self", "time", "text", "title", "description", "url",
                   "file_name", "quoted_new_msg_id", "quoted_text", "recalled_new_msg_id", "at_list", "extra",
                   "enriched", "moderation_hits", "received_at", "source_partition", "source_offset")


def message(identity: int, text: str, *, seconds: int = 0, recalls: int | None = None, enriched: int = 1,
            account: str = "wxid_aae1mfznbp4zoj", conversation: str = "123@chatroom", is_self: bool = False) -> list[object]:
    values = {"account": account, "identity": str(identity), "new_msg_id": identity, "type_code": "80001",
              "type_name": "recall" if recalls else "text", "is_group": conversation.endswith("@chatroom"),
              "conversation": conversation, "conversation_name": "项目群" if enriched else "", "sender": "wxid_b",
              "sender_name": "张三" if enriched else "", "is_self": is_self,
              "time": datetime.fromtimestamp(T0.timestamp() + seconds, tz=UTC), "text": text,
              "recalled_new_msg_id": recalls, "enriched": enriched, "received_at": T0}
    defaults: dict[str, object] = {"at_list": [], "extra": {}, "moderation_hits": 0, "source_partition": 0,
                                   "source_offset": 0}
    return [values.get(c, defaults.get(c, "" if c not in ("msg_id", "native_type", "quoted_new_msg_id") else None))
            for c in MESSAGE_COLUMNS]


def test_migrations_run_twice_without_change(open_clickhouse: Callable[..., Client]) -> None:
    client = open_clickhouse()
    assert [m.version for m in migrate(client)] == [m.version for m in MIGRATIONS]
    before = schema_fingerprint(client)
    assert migrate(client) == []
    assert schema_fingerprint(client) == before
    names = {name for name, _ in before}
    assert {"messages", "raw_callbacks", "last_messages", "contacts", "moderation_hits", "account_events",
            "v_messages", "v_last_messages", "v_contacts", "v_moderation_hits", "v_account_events"} <= names


def test_repeats_recalls_and_last_messages_as_users_see_them(open_clickhouse: Callable[..., Client]) -> None:
    client = open_clickhouse()
    migrate(client)

    def insert(rows: list[list[object]]) -> None:
        client.insert("wxarchive.messages", rows, column_names=MESSAGE_COLUMNS)

    def query(sql: str) -> Sequence[Sequence[object]]:
        return client.query(sql).result_rows

    insert([message(2, "recalled later", seconds=5, enriched=0)])
    insert([message(3, "撤回", seconds=9, recalls=2)])  # the recall may even arrive before its target
    insert([message(1, "今天内幕消息很多", seconds=1), message(2, "recalled later", seconds=5)])  # 2 again, now named
    insert([message(1, "今天内幕消息很多", seconds=1)])  # a repeat in another block
    assert query("SELECT count() FROM wxarchive.messages") == [(5,)]  # the table holds the repeats until merges
    assert query("SELECT identity, recalled, sender_name FROM wxarchive.v_messages ORDER BY identity") == [
        ("1", False, "张三"), ("2", True, "张三"), ("3", False, "张三")]  # the named copy of 2 wins
    assert query("SELECT message_count, last_identity, last_text, conversation_name FROM wxarchive.v_last_messages") == [
        (3, "3", "撤回", "项目群")]
    assert query("SELECT identity FROM wxarchive.v_messages WHERE hasAllTokens(content, '内幕消息') "
                 "AND content LIKE '%内幕消息%'") == [("1",)]


def test_every_sql_example_in_the_docs_runs(open_clickhouse: Callable[..., Client]) -> None:
    client = open_clickhouse()
    migrate(client)
    client.insert("wxarchive.messages", [message(1, "内幕消息", seconds=1), message(2, "ok", seconds=60, is_self=True)],
                  column_names=MESSAGE_COLUMNS)
    examples = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(examples) >= 6
    for sql in examples:
        client.query(sql)


def test_the_cluster_variant_parses_and_shards_every_table_by_its_identity(open_clickhouse: Callable[..., Client]) -> None:
    client = open_clickhouse()
    statements = cluster_statements("archive")
    for statement in statements:
        client.query(f"EXPLAIN AST {statement}")  # ClickHouse's own parser
    text = "\n".join(statements)
    for table in ("raw_callbacks", "messages", "recalls", "last_messages", "contacts", "moderation_hits",
                  "account_events", "dead_letters"):
        assert f"CREATE TABLE IF NOT EXISTS wxarchive.{table}_local ON CLUSTER 'archive'" in text
        assert f"ENGINE = Distributed('archive', wxarchive, {table}_local," in text
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/wxarchive/messages', '{replica}', enriched)" in text
    assert "TO wxarchive.last_messages_local AS" in text and "FROM wxarchive.messages_local" in text
    assert all(" ON CLUSTER 'archive'" in s for s in statements)
