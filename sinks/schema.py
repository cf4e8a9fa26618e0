"""The `wxarchive` database: versioned migrations, applied by `wxarchive migrate` and on every sink start.

Why migrations rather than one script: an archive lives for years, so its schema changes in numbered steps,
each applied once and recorded in `schema_migrations`; running them again changes nothing. Every statement
is also idempotent on its own (IF NOT EXISTS), so a step interrupted half-way can simply be run again.

Exactly once as queries see it (DESIGN invariant 2): each table's engine collapses repeated rows by the
table's identity, and the sinks' insert tokens drop a repeated block before it is even written
(`non_replicated_deduplication_window`). The `v_*` views are what users query: they never need FINAL or
argMax. docs/clickhouse.md documents every column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

__all__ = ["MIGRATIONS", "cluster_statements", "migrate", "schema_fingerprint"]

DATABASE = "wxarchive"
# block dedupe on non-replicated tables: the last N insert tokens per table are remembered
_DEDUPE = "non_replicated_deduplication_window = 10000"
_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "archive tables and views", (
        f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.raw_callbacks (
            topic LowCardinality(String),
            partition UInt32,
            offset UInt64,
            received_at DateTime64(3, '{_TZ}'),
            key String,
            body String,
            headers Map(LowCardinality(String), String),
            stored_at DateTime64(3, '{_TZ}') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(received_at)
        ORDER BY (topic, partition, offset)
        SETTINGS {_DEDUPE}""",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.messages (
            account LowCardinality(String),
            identity String,
            new_msg_id Nullable(UInt64),
            msg_id Nullable(UInt64),
            platform_account LowCardinality(String),
            w_id String,
            type_code LowCardinality(String),
            type_name LowCardinality(String),
            native_type Nullable(Int32),
            is_group Bool,
            conversation String,
            conversation_name String,
            sender String,
            sender_name String,
            sender_remark String,
            sender_alias String,
            receiver String,
            is_self Bool,
            time DateTime64(3, '{_TZ}') DEFAULT fromUnixTimestamp64Milli(coalesce(time_ms, received_ms), '{_TZ}'),
            text String,
            title String,
            description String,
            url String,
            file_name String,
            quoted_new_msg_id Nullable(UInt64),
            quoted_text String,
            recalled_new_msg_id Nullable(UInt64),
            at_list Array(String),
            extra Map(String, String),
            enriched UInt8,
            moderation_hits UInt16,
            received_at DateTime64(3, '{_TZ}') DEFAULT fromUnixTimestamp64Milli(received_ms, '{_TZ}'),
            source_partition UInt32 DEFAULT tupleElement(source, 'partition'),
            source_offset UInt64 DEFAULT tupleElement(source, 'offset'),
            archived_at DateTime64(3, '{_TZ}') DEFAULT now64(3),
            time_ms Nullable(Int64) EPHEMERAL,
            received_ms Int64 EPHEMERAL,
            source Tuple(partition UInt32, offset UInt64) EPHEMERAL,
            CONSTRAINT identified CHECK account != '' AND identity != '' AND type_code != '',
            content String MATERIALIZED arrayStringConcat(arrayDistinct(arrayFilter(x -> x != '', [text, title, description, file_name, quoted_text])), '\\n'),
            INDEX content_text content TYPE text(tokenizer = ngrams(2)) GRANULARITY 1,
            INDEX conversation_bloom conversation TYPE bloom_filter GRANULARITY 4
        ) ENGINE = ReplacingMergeTree(enriched)
        PARTITION BY toYYYYMM(time)
        ORDER BY (account, identity)
        SETTINGS {_DEDUPE}""",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.recalls (
            account LowCardinality(String),
            new_msg_id UInt64,
            recall_identity String,
            recalled_at DateTime64(3, '{_TZ}')
        ) ENGINE = ReplacingMergeTree
        ORDER BY (account, new_msg_id)""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.recalls_mv TO {DATABASE}.recalls AS
            SELECT account, assumeNotNull(recalled_new_msg_id) AS new_msg_id, identity AS recall_identity,
                   time AS recalled_at
            FROM {DATABASE}.messages WHERE recalled_new_msg_id IS NOT NULL""",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.last_messages (
            account LowCardinality(String),
            is_group Bool,
            conversation String,
            last_time SimpleAggregateFunction(max, DateTime64(3, '{_TZ}')),
            last_message AggregateFunction(argMax, Tuple(String, String, String, String, Bool), DateTime64(3, '{_TZ}')),
            conversation_name AggregateFunction(argMax, String, DateTime64(3, '{_TZ}')),
            identities AggregateFunction(uniqExact, String)
        ) ENGINE = AggregatingMergeTree
        ORDER BY (account, is_group, conversation)""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.last_messages_mv TO {DATABASE}.last_messages AS
            SELECT account, is_group, conversation, max(time) AS last_time,
                   argMaxState((identity, sender, type_name, text, is_self), time) AS last_message,
                   argMaxState(conversation_name, if(conversation_name = '', toDateTime64(0, 3, '{_TZ}'), time))
                       AS conversation_name,
                   uniqExactState(identity) AS identities
            FROM {DATABASE}.messages GROUP BY account, is_group, conversation""",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.contacts (
            account LowCardinality(String),
            wxid String,
            is_group Bool MATERIALIZED endsWith(wxid, '@chatroom'),
            nickname String,
            remark String,
            alias String,
            signature String,
            sex UInt8,
            country String,
            province String,
            city String,
            big_head String,
            small_head String,
            labels String,
            fetched_at DateTime64(3, '{_TZ}'),
            snapshot String
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(fetched_at)
        ORDER BY (account, wxid, fetched_at)
        SETTINGS {_DEDUPE}""",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.moderation_hits (
            account LowCardinality(String),
            conversation String,
            is_group Bool,
            sender String,
            identity String,
            new_msg_id Nullable(UInt64),
            time DateTime64(3, '{_TZ}') DEFAULT fromUnixTimestamp64Milli(coalesce(time_ms, 0), '{_TZ}'),
            time_ms Nullable(Int64) EPHEMERAL,
            word String,
            category LowCardinality(String),
            severity LowCardinality(String),
            mode LowCardinality(String),
            field LowCardinality(String),
            start UInt32,
            end UInt32,
            matched String,
            snippet String,
            CONSTRAINT identified CHECK account != '' AND identity != '' AND word != ''
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(time)
        ORDER BY (account, identity, field, start, word)
        SETTINGS {_DEDUPE}""",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.account_events (
            account LowCardinality(String),
            identity String,
            kind LowCardinality(String),
            type_code LowCardinality(String),
            type_name LowCardinality(String),
            conversation String,
            sender String,
            time DateTime64(3, '{_TZ}') DEFAULT fromUnixTimestamp64Milli(coalesce(time_ms, received_ms), '{_TZ}'),
            text String,
            extra Map(String, String),
            received_at DateTime64(3, '{_TZ}') DEFAULT fromUnixTimestamp64Milli(received_ms, '{_TZ}'),
            body String DEFAULT raw,
            time_ms Nullable(Int64) EPHEMERAL,
            received_ms Int64 EPHEMERAL,
            raw String EPHEMERAL,
            CONSTRAINT identified CHECK account != '' AND identity != '' AND type_code != ''
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(time)
        ORDER BY (account, identity)
        SETTINGS {_DEDUPE}""",
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.dead_letters (
            partition UInt32,
            offset UInt64,
            received_at DateTime64(3, '{_TZ}'),
            stage LowCardinality(String),
            reason String,
            source String,
            key String,
            body String,
            headers Map(LowCardinality(String), String)
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(received_at)
        ORDER BY (partition, offset)
        SETTINGS {_DEDUPE}""",
        f"""CREATE VIEW IF NOT EXISTS {DATABASE}.v_messages AS
            SELECT m.* EXCEPT (content), m.content,
                   (m.account, m.new_msg_id) IN (SELECT account, toNullable(new_msg_id) FROM {DATABASE}.recalls)
                       AS recalled
            FROM {DATABASE}.messages AS m FINAL""",
        f"""CREATE VIEW IF NOT EXISTS {DATABASE}.v_last_messages AS
            SELECT account, is_group, conversation, conversation_name, last_time,
                   last.1 AS last_identity, last.2 AS last_sender, last.3 AS last_type, last.4 AS last_text,
                   last.5 AS last_is_self, message_count
            FROM (
                SELECT l.account AS account, l.is_group AS is_group, l.conversation AS conversation,
                       max(l.last_time) AS last_time, argMaxMerge(l.last_message) AS last,
                       argMaxMerge(l.conversation_name) AS conversation_name,
                       uniqExactMerge(l.identities) AS message_count
                FROM {DATABASE}.last_messages AS l GROUP BY l.account, l.is_group, l.conversation
            )""",
        f"""CREATE VIEW IF NOT EXISTS {DATABASE}.v_contacts AS
            SELECT c.account AS account, c.wxid AS wxid, c.is_group AS is_group,
                   argMax(c.nickname, c.fetched_at) AS nickname, argMax(c.remark, c.fetched_at) AS remark,
                   argMax(c.alias, c.fetched_at) AS alias, argMax(c.signature, c.fetched_at) AS signature,
                   argMax(c.sex, c.fetched_at) AS sex, argMax(c.country, c.fetched_at) AS country,
                   argMax(c.province, c.fetched_at) AS province, argMax(c.city, c.fetched_at) AS city,
                   argMax(c.big_head, c.fetched_at) AS big_head, argMax(c.labels, c.fetched_at) AS labels,
                   max(c.fetched_at) AS fetched_at, count() AS snapshots
            FROM {DATABASE}.contacts AS c FINAL GROUP BY c.account, c.wxid, c.is_group""",
        f"""CREATE VIEW IF NOT EXISTS {DATABASE}.v_moderation_hits AS
            SELECT * FROM {DATABASE}.moderation_hits FINAL""",
        f"""CREATE VIEW IF NOT EXISTS {DATABASE}.v_account_events AS
            SELECT * FROM {DATABASE}.account_events FINAL""",
    )),
    Migration(2, "read side: audit log and principals", (
        # append-only: nothing updates or deletes an audit row; the engine only collapses a replayed copy of the
        # same record (same time and id), which the sink's insert tokens mostly drop before it is written
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.audit_log (
            id String,
            time DateTime64(3, '{_TZ}'),
            principal String,
            token_id String,
            role LowCardinality(String),
            action LowCardinality(String),
            parameters String,
            result_count Nullable(UInt64),
            status UInt16,
            request_id String,
            client String,
            recorded_at DateTime64(3, '{_TZ}') DEFAULT now64(3),
            CONSTRAINT identified CHECK id != '' AND principal != '' AND action != ''
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(time)
        ORDER BY (time, id)
        SETTINGS {_DEDUPE}""",
        # the token's hash only, never the token; the highest version per token_id is its state
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.principals (
            token_id String,
            name String,
            role LowCardinality(String),
            token_sha256 FixedString(64),
            created_at DateTime64(3, '{_TZ}'),
            created_by String,
            revoked_at Nullable(DateTime64(3, '{_TZ}')),
            version UInt64,
            CONSTRAINT identified CHECK token_id != '' AND startsWith(token_sha256, token_id)
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY token_id
        SETTINGS {_DEDUPE}""",
        f"""CREATE VIEW IF NOT EXISTS {DATABASE}.v_audit_log AS
            SELECT * FROM {DATABASE}.audit_log FINAL""",
        f"""CREATE VIEW IF NOT EXISTS {DATABASE}.v_principals AS
            SELECT p.token_id AS token_id, p.name AS name, p.role AS role, p.created_at AS created_at,
                   p.created_by AS created_by, p.revoked_at AS revoked_at, p.revoked_at IS NOT NULL AS revoked,
                   p.version AS version
            FROM {DATABASE}.principals AS p FINAL""",
    )),
)


_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS wxarchive\.(\w+) \((.*)\) ENGINE = (\w+)(\([^)]*\))?(.*)$", re.S)
_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS wxarchive\.(\w+) TO wxarchive\.(\w+) AS(.*)$", re.S)
# rows of one account live on one shard, so the engines' dedupe by (account, …) sees every copy of a row
# (the read side's tables have no account: the audit log by record, principals by token, each token's versions together)
_SHARDING = {"raw_callbacks": "cityHash64(topic, partition)", "dead_letters": "partition", "audit_log": "cityHash64(id)",
             "principals": "cityHash64(token_id)"}


def cluster_statements(cluster: str) -> list[str]:
    """The migrations for a cluster: Replicated* engines on `NAME_local` tables (ZooKeeper/Keeper paths by
    {shard} and {replica} macros), Distributed tables under the plain names sharded by account, and the
    materialized views on the local tables. Generated, not applied: `wxarchive migrate --print --cluster C`."""
    on = f" ON CLUSTER '{cluster}'"
    out = []
    for migration in MIGRATIONS:
        for statement in migration.statements:
            text = statement.strip()
            table, view = _TABLE.match(text), _MV.match(text)
            if table:
                name, columns, engine, args, rest = table.groups()
                inner = (args or "()")[1:-1]
                path = f"'/clickhouse/tables/{{shard}}/{DATABASE}/{name}', '{{replica}}'"
                replicated = f"Replicated{engine}({path}{', ' + inner if inner else ''})"
                rest = rest.replace(f"SETTINGS {_DEDUPE}", "")  # replicated tables dedupe blocks by default
                out.append(f"CREATE TABLE IF NOT EXISTS {DATABASE}.{name}_local{on} ({columns}) ENGINE = {replicated}{rest}")
                key = _SHARDING.get(name, "cityHash64(account)")
                out.append(f"CREATE TABLE IF NOT EXISTS {DATABASE}.{name}{on} AS {DATABASE}.{name}_local "
                           f"ENGINE = Distributed('{cluster}', {DATABASE}, {name}_local, {key})")
            elif view:
                name, target, query = view.groups()
                query = re.sub(r"FROM wxarchive\.(\w+)", r"FROM wxarchive.\1_local", query)
                out.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.{name}{on} TO {DATABASE}.{target}_local AS{query}")
            else:
                out.append(re.sub(r"^(CREATE (?:DATABASE|VIEW) IF NOT EXISTS [\w.]+)", rf"\1{on}", text))
    return out


def migrate(client: Client) -> list[Migration]:
    """Apply the migrations not yet recorded; returns those applied now (empty when up to date)."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    client.command(f"""CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations (
        version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree ORDER BY version""")
    done = {row[0] for row in client.query(f"SELECT version FROM {DATABASE}.schema_migrations FINAL").result_rows}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(f"{DATABASE}.schema_migrations", [[migration.version, migration.name]],
                      column_names=["version", "name"])
        applied.append(migration)
    return applied


def schema_fingerprint(client: Client) -> list[tuple[str, str]]:
    """Every table's and view's CREATE statement, to show that a second migrate changed nothing."""
    return [(r[0], r[1]) for r in client.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": DATABASE}).result_rows]
