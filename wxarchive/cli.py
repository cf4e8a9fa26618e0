"""The `wxarchive` command. Subcommands stay thin: each parses flags and calls one module that does the job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from wxarchive import __version__, logs
from wxarchive.config import Settings, describe, env_name, flag_name
from wxarchive.errors import ClickHouseError, ConfigError, PrerequisiteError, WxarchiveError
from wxarchive.net import require_free_port

if TYPE_CHECKING:
    from deploy.kafka_broker import LocalKafka

# Heavy modules (aiokafka, chdb) are imported inside the commands that need them, so `--help` and
# `config` answer at once.

DESCRIPTION = """\
wxarchive: an event-sourced archive of WeChat messages received as E云 callbacks.

Callbacks arrive at the ingest edge and are written raw to Kafka (the source of truth); faust-streaming
workers dedupe, enrich and moderate them; sinks write the archive into ClickHouse.
Every setting is a WXARCHIVE_* environment variable and a flag; `wxarchive config --describe` lists them."""

EPILOG = """\
examples:
  wxarchive up                        run the whole write path on this machine until Ctrl-C
  wxarchive up --check                start it, report health, stop, and exit 0 if everything was healthy
  wxarchive kafka start --port 9192   start only the local broker, on another port
  WXARCHIVE_EDGE_SECRET=s3cret wxarchive edge --spool
                                      receive E云 callbacks on :8080/callback/s3cret
  wxarchive worker                    dedupe, moderate and emit the archive's streams
  wxarchive keywords add 赌博 --category gambling --severity 3
  wxarchive simulate --count 10000 --url http://127.0.0.1:8080/callback/s3cret
  wxarchive config                    print the effective configuration (secrets masked)"""


# The settings' help texts (wxarchive/config.py) are shared by every command: a flag one of them names is named
# with its command (`wxarchive edge --insecure`), so no --help offers a flag its command does not have.
def _config_flags() -> argparse.ArgumentParser:
    """The configuration flags: one per setting, its help from the setting."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (each flag overrides its WXARCHIVE_* variable)")
    for f in fields(Settings):
        group.add_argument(flag_name(f.name), dest=f"cfg_{f.name}", metavar=f.name.split("_")[-1].upper(),
                           help=f"{f.metadata['help']} [{env_name(f.name)}]")
    return parent


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter

    def _leaf(group: Any, name: str, run: Callable[[argparse.Namespace, Settings], int], help: str,
              **details: str) -> argparse.ArgumentParser:
        """A runnable command: every one takes the configuration flags."""
        command = group.add_parser(name, parents=[_config_flags()], formatter_class=formatter, help=help, **details)
        command.set_defaults(run=run)
        return command

    parser = argparse.ArgumentParser(prog="wxarchive", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"wxarchive {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = _leaf(commands, "up", _cmd_up, help="run the archive on this machine (local broker, embedded ClickHouse)",
                             description="Start every part of the archive that is not already running, print where "
                                         "each one is and whether it is healthy, and keep running until Ctrl-C, "
                                         "which stops what this command started.")
    up.add_argument("--check", action="store_true", help="report health, stop what was started, and exit (0 = healthy)")
    up.add_argument("--demo", action="store_true",
                    help="also post simulated traffic to the edge, wait for the archive to catch up, print a report "
                         "read from ClickHouse, stop, and exit 0 only if the archive matches the simulator")
    up.add_argument("--count", type=_non_negative_int, default=2000, help="callbacks the demo posts (default 2000)")
    up.add_argument("--seed", type=int,
                    help="seed of the demo's traffic and of the fake E云's directory (default: for a demo a new one "
                         "each run, printed, so a second demo on the same data is new traffic; else 1, as simulate)")

    kafka = commands.add_parser("kafka", help="manage the local Apache Kafka broker (embedded mode)",
                                description="The local single-node Kafka broker, run from Maven Central jars. "
                                            "Its data, logs and pid file live in DATA_DIR/kafka.")
    actions = kafka.add_subparsers(dest="action", metavar="ACTION", required=True)
    _leaf(actions, "fetch", _cmd_kafka_fetch, help="download the broker's jars with Maven (once)")
    start = _leaf(actions, "start", _cmd_kafka_start, help="start the broker and wait until it serves requests")
    start.add_argument("--host", help="address to listen on (default: the host of WXARCHIVE_KAFKA_BOOTSTRAP)")
    start.add_argument("--port", type=int, help="broker port (default: the port of WXARCHIVE_KAFKA_BOOTSTRAP)")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness (default 90)")
    stop = _leaf(actions, "stop", _cmd_kafka_stop, help="stop the broker (SIGTERM, then SIGKILL)")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    _leaf(actions, "status", _cmd_kafka_status, help="is the broker running and answering?")

    edge = _leaf(commands, "edge", _cmd_edge, help="run the ingest edge: receive E云 callbacks and write them to Kafka",
        description="Receive E云 callbacks on POST /callback/SECRET (or /callback?secret=SECRET) and answer 200 only "
                    "after Kafka acknowledged the body, written unchanged to wxarchive.raw. Refused bodies of "
                    "authenticated senders go to wxarchive.dlq with the reason. With --spool, callbacks are kept "
                    "on local disk while Kafka is down and sent on when it is back. Also serves /healthz, "
                    "/readyz and /metrics.",
        epilog="examples:\n  WXARCHIVE_EDGE_SECRET=s3cret wxarchive edge --host 0.0.0.0 --port 8080 --spool\n"
               "  wxarchive edge --insecure          local use only: no secret\n"
               "  (then register http://HOST:8080/callback/s3cret with E云's setHttpCallbackUrl)")
    edge.add_argument("--host", help="address to listen on (default WXARCHIVE_EDGE_HOST, 127.0.0.1)")
    edge.add_argument("--port", type=int, help="port (default WXARCHIVE_EDGE_PORT, 8080)")
    edge.add_argument("--spool", action="store_true", default=None, help="keep accepting while Kafka is down")
    edge.add_argument("--insecure", action="store_true", help="accept callbacks without a secret (local use)")

    worker = _leaf(commands, "worker", _cmd_worker, help="run the stream worker: dedupe, moderate, and emit the archive's streams",
        description="Read PREFIX.raw in micro-batches; send bodies that cannot be archived to PREFIX.dlq with the "
                    "reason; drop duplicates of (wcId, newMsgId) seen within 7 days; check every text against the "
                    "sensitive-word list (which it follows live); emit messages to PREFIX.messages, account, group "
                    "and friend events to PREFIX.events, and hits to PREFIX.moderation. Run several to scale out, up "
                    "to the raw topic's partitions. Names come from getContact (WXARCHIVE_EYUN_URL). Serves "
                    "/healthz, /readyz and /metrics on its own port. Stops cleanly on Ctrl-C or SIGTERM.")
    _ops_endpoint_flags(worker, "WORKER", 8082)

    sink = _leaf(commands, "sink", _cmd_sink, help="run the ClickHouse sink: the archive's topics into its tables",
        description="Read PREFIX.raw, .messages, .events, .moderation, .contacts and .dlq and insert them into the "
                    "wxarchive database (migrated first), in blocks of WXARCHIVE_SINK_BATCH_ROWS rows or "
                    "WXARCHIVE_SINK_BATCH_SECONDS seconds, each with a deduplication token; offsets are committed "
                    "only after the insert. While ClickHouse is down it retries and keeps its offsets. With the "
                    "embedded engine (chdb://) this process owns the directory: query through it or stop it. "
                    "Serves /healthz, /readyz and /metrics on its own port. Stops cleanly on Ctrl-C or SIGTERM.")
    _ops_endpoint_flags(sink, "SINK", 8083)

    migrate = _leaf(commands, "migrate", _cmd_migrate, help="create or update the wxarchive database in ClickHouse",
        description="Apply the schema migrations not yet applied (recorded in wxarchive.schema_migrations). Running "
                    "it again changes nothing. The sink also does this when it starts.")
    migrate.add_argument("--print", action="store_true", dest="print_sql", help="print the SQL instead of running it")
    migrate.add_argument("--cluster", metavar="NAME",
                         help="with --print: the cluster variant (Replicated tables, Distributed tables, ON CLUSTER NAME)")

    sql = _leaf(commands, "sql", _cmd_sql, help="run a read-only SQL query against the archive and print the result",
        description="Run one read-only query (SELECT, SHOW, DESCRIBE, EXPLAIN) against WXARCHIVE_CLICKHOUSE_DSN and "
                    "print the result. The embedded engine has one owner: while `wxarchive up` or `wxarchive sink` "
                    "holds the directory, stop it first (or point the DSN at a server).",
        epilog="examples:\n  wxarchive sql \"SELECT count() FROM wxarchive.v_messages\"\n"
               "  wxarchive sql --format CSVWithNames < query.sql > result.csv")
    sql.add_argument("query", nargs="?", help="the query (default: read it from standard input)")
    sql.add_argument("--format", default="PrettyCompactMonoBlock",
                     help="any ClickHouse output format (default PrettyCompactMonoBlock; e.g. TSVWithNames, CSVWithNames, JSONEachRow)")

    kw = commands.add_parser("keywords", help="manage the sensitive-word list (workers pick changes up within seconds)",
                             description="The sensitive-word list lives on the compacted topic PREFIX.keywords. A fuzzy "
                                         "word also matches evasive spellings (spaces, punctuation, zero-width, "
                                         "traditional, full-width); a strict word matches only as written. Allow-list "
                                         "phrases silence hits they contain.")
    kw_actions = kw.add_subparsers(dest="action", metavar="ACTION", required=True)
    kw_add = _leaf(kw_actions, "add", _cmd_keywords, help="add or change a word (or an allow-list phrase)")
    kw_add.add_argument("word")
    kw_add.add_argument("--category", help="e.g. gambling, fraud, spam (default: default); not with --allow")
    kw_add.add_argument("--severity", type=int, choices=range(1, 6), metavar="1-5", help="default 1; not with --allow")
    kw_add.add_argument("--strict", action="store_true", help="match only as written, without folding evasions")
    kw_add.add_argument("--allow", action="store_true", help="an allow-list phrase: hits inside it are not reported")
    kw_add.add_argument("--pinyin", action="store_true", help="also match the word spelled in pinyin (赌博: dubo, du bo)")
    kw_add.add_argument("--group", action="append", default=[], metavar="ID@chatroom", help="only in this group (repeatable)")
    kw_add.add_argument("--account", action="append", default=[], metavar="WCID", help="only for this account (repeatable)")
    kw_remove = _leaf(kw_actions, "remove", _cmd_keywords, help="remove a word or phrase")
    kw_remove.add_argument("word")
    kw_remove.add_argument("--strict", action="store_true", help="the strict entry of the word")
    kw_remove.add_argument("--allow", action="store_true", help="an allow-list phrase")
    kw_list = _leaf(kw_actions, "list", _cmd_keywords, help="show the current list")
    kw_list.add_argument("--json", action="store_true", help="one JSON object per rule")
    kw_import = _leaf(kw_actions, "import", _cmd_keywords, help="add every rule of a file (all or nothing)",
                                      description="One rule per line: word[,category[,severity[,mode]]] with mode "
                                                  "fuzzy (default), strict, or pinyin (fuzzy, and spelled in pinyin "
                                                  "too), or allow:PHRASE[,mode]. Lines starting "
                                                  "with # are comments. A file with a bad line imports nothing.")
    kw_import.add_argument("file", type=Path)

    sim = _leaf(commands, "simulate", _cmd_simulate, help="generate realistic E云 callback traffic into a file or at an edge",
        description="Generate callbacks as E云 sends them: several accounts, private and group chats, the type mix "
                    "of real chats, re-pushed duplicates (some long after, some under a new wId), out-of-order "
                    "delivery, sensitive words in evasive spellings and malformed bodies. The same --seed gives "
                    "the same bytes. Ends with a summary of what an archive must contain.",
        epilog="examples:\n  wxarchive simulate --count 10000 --seed 1 --out traffic.jsonl --summary truth.json\n"
               "  wxarchive simulate --count 5000 --rate 500 --url http://127.0.0.1:8080/callback/SECRET")
    target = sim.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="FILE", help="write one callback body per line (JSONL)")
    target.add_argument("--url", help="POST each callback to this edge URL")
    sim.add_argument("--count", type=_non_negative_int, default=1000, help="callbacks to send, all kinds (default 1000)")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same traffic, byte for byte (default 1)")
    sim.add_argument("--accounts", type=int, default=3, help="archived WeChat accounts (default 3)")
    sim.add_argument("--duplicates", type=float, default=0.1, metavar="SHARE", help="share of re-pushed duplicates (default 0.1)")
    sim.add_argument("--malformed", type=float, default=0.01, metavar="SHARE", help="share of malformed bodies (default 0.01)")
    sim.add_argument("--sensitive", type=float, default=0.03, metavar="SHARE", help="share of texts with a sensitive word (default 0.03)")
    sim.add_argument("--events", type=float, default=0.03, metavar="SHARE", help="share of group/friend/account events (default 0.03)")
    sim.add_argument("--start", default=None, help="time of the first message, ISO 8601 (default 2026-11-01T09:00:00+08:00)")
    sim.add_argument("--rate", type=float, default=0.0, help="with --url: callbacks per second (default: as fast as possible)")
    sim.add_argument("--concurrency", type=int, default=16, help="with --url: requests in flight (default 16)")
    sim.add_argument("--summary", type=Path, metavar="FILE", help="also write the summary as JSON")
    sim.add_argument("--quiet", action="store_true", help="no progress display")

    fake = _leaf(commands, "fake-eyun", _cmd_fake_eyun, help="run a fake E云 API (getContact, sendText, address list, chat rooms) for local use and tests",
        description="Serve the E云 endpoints the archive uses, with the documents' response shapes, from a generated "
                    "directory of accounts, friends and groups (the same --seed and --accounts as `simulate` give "
                    "the same people). Knobs inject failures, latency and timeouts; GET /_fake/calls lists every "
                    "call, POST /_fake/knobs changes knobs while running.")
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fake.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    fake.add_argument("--seed", type=int, default=1, help="directory seed, as for simulate (default 1)")
    fake.add_argument("--accounts", type=int, default=3, help="accounts in the directory (default 3)")
    fake.add_argument("--failure-rate", type=float, default=0.0, help="share of calls answered code 1001")
    fake.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    fake.add_argument("--jitter-ms", type=float, default=0.0, help="plus up to this much at random")
    fake.add_argument("--timeout-rate", type=float, default=0.0, help="share of calls that hang for 30 s")
    fake.add_argument("--enforce-pacing", action="store_true", help="answer 1001 to getContact calls under 300 ms apart")

    cfg = _leaf(commands, "config", _cmd_config, help="print the effective configuration (secrets masked)")
    cfg.add_argument("--describe", action="store_true", help="list every setting: variable, flag, default, meaning")
    return parser


def _ops_endpoint_flags(command: argparse.ArgumentParser, component: str, port: int) -> None:
    command.add_argument("--host", help=f"address of the health and metrics endpoint (default WXARCHIVE_{component}_HOST)")
    command.add_argument("--port", type=int,
                         help=f"port of the health and metrics endpoint (default WXARCHIVE_{component}_PORT, {port})")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    return Settings.load(overrides=overrides)


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal
    import time

    from wxarchive.demo import run_demo, seed_keywords
    from wxarchive.stack import Stack

    async def main() -> int:
        # without a demo the fake E云 knows the people of `wxarchive simulate`'s default seed, 1
        seed = args.seed if args.seed is not None else (int(time.time()) % 1_000_000 if args.demo else 1)
        stack = Stack(settings, directory_seed=seed)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            # the demo's words go on the list before the worker starts, since it reads the list first
            await stack.start(prepare=seed_keywords if args.demo else None)
            print("wxarchive is up:\n" + stack.report(), flush=True)
            if args.check:
                return 0 if stack.healthy else 1
            if args.demo:
                assert stack.sink is not None
                return 0 if await run_demo(stack.sink, stack.edge_url, args.count, seed,
                                           stack.directory_accounts) else 1
            print("Press Ctrl-C to stop.", flush=True)
            ended = await stack.wait(stop)
            if ended:
                print(f"stopping: {ended}", flush=True)
                return 1
            print("stopping…", flush=True)
            return 0
        finally:
            await stack.stop()

    return asyncio.run(main())


def _broker(args: argparse.Namespace, settings: Settings) -> LocalKafka:
    from deploy.kafka_broker import BrokerSpec, LocalKafka

    spec = BrokerSpec.from_settings(settings, host=getattr(args, "host", None), port=getattr(args, "port", None))
    return LocalKafka(spec)


def _cmd_kafka_fetch(args: argparse.Namespace, settings: Settings) -> int:
    result = _broker(args, settings).fetch(progress=True)
    verb = f"fetched in {result.seconds:.1f}s" if result.fetched else "already cached"
    print(f"Apache Kafka {settings.kafka_version}: {result.jars} jars, {result.megabytes:.0f} MB in {result.libs_dir} ({verb})")
    return 0


def _cmd_kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    state = _broker(args, settings).start(timeout=args.timeout, progress=True)
    if state.already_running:
        print(f"Kafka is already running: pid {state.pid} on {state.bootstrap} ({state.detail})")
        return 0 if state.ready else 1
    print(f"Kafka {state.version} ready on {state.bootstrap}: pid {state.pid}, "
          f"started in {state.seconds:.1f}s, RSS {state.rss_mb or 0:.0f} MB")
    return 0


def _cmd_kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    state = _broker(args, settings).stop(timeout=args.timeout)
    if state.pid is None:
        print("Kafka is not running")
    else:
        print(f"Kafka pid {state.pid} {state.detail} in {state.seconds:.1f}s")
    return 0


def _cmd_kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    state = _broker(args, settings).status()
    if not state.running:
        print(f"Kafka is not running (local broker on {state.bootstrap})")
        return 3
    print(f"Kafka {state.version} pid {state.pid} on {state.bootstrap}: {state.detail}; "
          f"up {state.uptime_s or 0:.0f}s, RSS {state.rss_mb or 0:.0f} MB")
    return 0 if state.ready else 1


def _cmd_edge(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses
    import logging

    from ingest.server import build_app, serve

    changes = {k: v for k, v in (("edge_host", args.host), ("edge_port", args.port), ("edge_spool", args.spool)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    app = build_app(settings, insecure=args.insecure)
    if args.insecure and not (settings.edge_secret or settings.edge_account_secrets):
        logging.getLogger("wxarchive.edge").warning("edge running without a secret: anyone who can reach it may post")
    print(f"edge listening on http://{settings.edge_host}:{settings.edge_port}/callback "
          f"(Kafka {settings.kafka_bootstrap}, spool {'on' if settings.edge_spool else 'off'})", flush=True)
    serve(app, settings)
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from streams.worker import run

    changes = {k: v for k, v in (("worker_host", args.host), ("worker_port", args.port)) if v is not None}
    require_free_port(settings.worker_host if args.host is None else args.host,
                      settings.worker_port if args.port is None else args.port,
                      "choose another with --port or WXARCHIVE_WORKER_PORT")
    run(dataclasses.replace(settings, **changes))
    return 0


def _cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from sinks.sink import run

    changes = {k: v for k, v in (("sink_host", args.host), ("sink_port", args.port)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    require_free_port(settings.sink_host, settings.sink_port, "choose another with --port or WXARCHIVE_SINK_PORT")
    run(settings)
    return 0


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from wxarchive.clickhouse import open_client, parse_dsn
    from sinks.schema import MIGRATIONS, cluster_statements, migrate

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
    from wxarchive.clickhouse import open_client, read_only_query

    query = args.query if args.query is not None else sys.stdin.read()
    if not query.strip():
        raise ConfigError("sql: no query given (as an argument or on standard input)")
    client = open_client(settings.clickhouse_dsn)
    try:
        result = read_only_query(client, query, args.format)
    finally:
        client.close()
    sys.stdout.buffer.write(result)
    return 0


def _cmd_keywords(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import dataclasses

    import orjson

    from moderation.keyword_admin import current_rules, describe, read_import_file, write_rules
    from schemas.keywords import KeywordRule

    mode = "strict" if getattr(args, "strict", False) else "fuzzy"
    if args.action == "add":
        if not args.word.strip():
            raise ConfigError("keywords add: the word is empty")
        if args.allow and (args.category is not None or args.severity is not None):
            raise ConfigError("keywords add --allow: an allow-list phrase silences hits inside it and has no category "
                              "or severity; leave out --category and --severity")
        rule = KeywordRule(args.word.strip(), args.category or "default", args.severity or 1, mode, args.allow,
                           args.pinyin, tuple(args.group), tuple(args.account))
        asyncio.run(write_rules(settings, [rule]))
        print(f"added {describe(rule)}")
    elif args.action == "remove":
        asyncio.run(write_rules(settings, [KeywordRule(args.word.strip(), mode=mode, allow=args.allow)], remove=True))
        print(f"removed {args.word.strip()!r} ({mode}{', allow-list' if args.allow else ''})")
    elif args.action == "import":
        rules = read_import_file(args.file)
        asyncio.run(write_rules(settings, rules))
        print(f"imported {len(rules)} rules from {args.file}")
    else:
        rules = asyncio.run(current_rules(settings))
        for rule in rules:
            if args.json:
                print(orjson.dumps(dataclasses.asdict(rule)).decode())
            else:
                scope = ",".join(rule.groups + rule.accounts) or "everywhere"
                kind = "allow" if rule.allow else f"{rule.category}/{rule.severity}"
                print(f"{rule.word}\t{kind}\t{rule.mode}{'+pinyin' if rule.pinyin else ''}\t{scope}")
        if not args.json:
            print(f"{len(rules)} rules", file=sys.stderr)
    return 0


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from eyun.delivery import Progress, post_all, write_jsonl
    from eyun.traffic import DEFAULT_START, TrafficConfig, TrafficGenerator

    try:
        config = TrafficConfig(count=args.count, seed=args.seed, accounts=args.accounts, duplicate_rate=args.duplicates,
                               malformed_rate=args.malformed, sensitive_rate=args.sensitive, event_rate=args.events,
                               start=args.start or DEFAULT_START)
        generator = TrafficGenerator(config)
    except ValueError as exc:
        raise ConfigError(f"simulate: {exc}") from None
    bodies = generator.bodies()
    progress = Progress(len(bodies), quiet=args.quiet)
    if args.out is not None:
        write_jsonl(bodies, args.out, progress)
    else:
        generator.summary.http.update(asyncio.run(post_all(bodies, args.url, concurrency=args.concurrency,
                                                           rate=args.rate, progress=progress)))
    print(generator.summary.to_text())
    if args.summary is not None:
        args.summary.write_bytes(generator.summary.to_json())
    failed = generator.summary.http.get("error", 0) + sum(v for k, v in generator.summary.http.items() if k.startswith("5"))
    return 1 if failed else 0


def _cmd_fake_eyun(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from eyun.directory import Directory
    from eyun.fake_server import DEFAULT_TOKEN, FakeEyun, Knobs, serve

    knobs = Knobs(failure_rate=args.failure_rate, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
                  timeout_rate=args.timeout_rate, enforce_pacing=args.enforce_pacing)
    fake = FakeEyun(Directory.generate(seed=args.seed, accounts=args.accounts), token=settings.eyun_token or DEFAULT_TOKEN,
                    knobs=knobs, seed=args.seed)

    async def run() -> None:
        try:
            runner, url = await serve(fake, args.host, args.port)
        except OSError as exc:
            raise PrerequisiteError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        accounts = ", ".join(f"{a.wc_id} (wId {a.w_id})" for a in fake.directory.accounts)
        print(f"fake E云 listening on {url}; accounts: {accounts}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    if args.describe:
        for env, flag, default, help_text in describe():
            print(f"{env}\n  flag: {flag}\n  default: {default or '(empty)'}\n  {help_text}")
        return 0
    for name, value in settings.masked().items():
        print(f"{env_name(name)}={value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace, Settings], int] = args.run
    try:
        settings = _settings(args)
        logs.configure(settings.log_level, settings.log_format)
        return run(args, settings)
    except WxarchiveError as exc:
        print(f"wxarchive: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
