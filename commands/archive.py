"""`wxarchive migrate` and `wxarchive sql`: the ClickHouse archive's schema and read-only queries."""

from __future__ import annotations

import argparse
import sys

from commands.common import Subcommands, leaf
from wxarchive.config import Settings
from wxarchive.errors import ConfigError


def register(commands: Subcommands) -> None:
    migrate = leaf(commands, "migrate", _cmd_migrate, help="create or update the wxarchive database in ClickHouse",
        description="Apply the schema migrations not yet applied (recorded in wxarchive.schema_migrations). Running "
                    "it again changes nothing. The sink also does this when it starts.")
    migrate.add_argument("--print", action="store_true", dest="print_sql", help="print the SQL instead of running it")
    migrate.add_argument("--cluster", metavar="NAME",
                         help="with --print: the cluster variant (Replicated tables, Distributed tables, ON CLUSTER NAME)")

    sql = leaf(commands, "sql", _cmd_sql, help="run a read-only SQL query against the archive and print the result",
        description="Run one read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) and print the "
                    "result as it arrives. In embedded mode it goes through the door that `wxarchive up` (or "
                    "`wxarchive sink`) serves on WXARCHIVE_DOOR_PORT, so it works while the stack runs; with nothing "
                    "running it opens the archive itself, under the same read-only guard. With a server: "
                    "WXARCHIVE_READ_DSN, else WXARCHIVE_CLICKHOUSE_DSN.",
        epilog="examples:\n  wxarchive sql \"SELECT count() FROM wxarchive.v_messages\"\n"
               "  wxarchive sql --format CSVWithNames < query.sql > result.csv")
    sql.add_argument("query", nargs="?", help="the query (default: read it from standard input)")
    sql.add_argument("--format", default="PrettyCompactMonoBlock",
                     help="any ClickHouse output format (default PrettyCompactMonoBlock; e.g. TSVWithNames, CSVWithNames, JSONEachRow)")


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.schema import MIGRATIONS, cluster_statements, migrate
    from wxarchive.clickhouse import open_client, parse_dsn

    if args.cluster and not args.print_sql:
        raise ConfigError("migrate --cluster generates the cluster's SQL for review: use it with --print")
    if args.print_sql and args.cluster:
        for statement in cluster_statements(args.cluster):
            print(statement + ";\n")
        return 0
    if args.print_sql:
        for migration in MIGRATIONS:
            print(f"-- migration {migration.version}: {migration.name}")
            for statement in migration.statements:
                print(statement.strip() + ";\n")
        return 0
    client = open_client(settings.clickhouse_dsn)
    try:
        applied = migrate(client)
    finally:
        client.close()
    where = parse_dsn(settings.clickhouse_dsn).display
    if applied:
        print(f"applied {', '.join(f'{m.version} ({m.name})' for m in applied)} to {where}")
    else:
        print(f"{where} is up to date (migration {MIGRATIONS[-1].version})")
    return 0


def _cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from door.reader import read

    query = args.query if args.query is not None else sys.stdin.read()
    if not query.strip():
        raise ConfigError("sql: no query given (as an argument or on standard input)")
    for block in read(settings, query, args.format):
        sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
    return 0
