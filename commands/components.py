"""`wxarchive edge`, `worker` and `sink`: each long-running component in its own process, through its service."""

from __future__ import annotations

import argparse

from commands.common import Subcommands, leaf, ops_endpoint_flags
from wxarchive.config import Settings
from wxarchive.net import require_free_port


def register(commands: Subcommands) -> None:
    edge = leaf(commands, "edge", _cmd_edge, help="run the ingest edge: receive E云 callbacks and write them to Kafka",
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

    worker = leaf(commands, "worker", _cmd_worker, help="run the stream worker: dedupe, moderate, and emit the archive's streams",
        description="Read PREFIX.raw in micro-batches; send bodies that cannot be archived to PREFIX.dlq with the "
                    "reason; drop duplicates of (wcId, newMsgId) seen within 7 days; check every text against the "
                    "sensitive-word list (which it follows live); emit messages to PREFIX.messages, account, group "
                    "and friend events to PREFIX.events, and hits to PREFIX.moderation. Run several to scale out, up "
                    "to the raw topic's partitions. Names come from getContact (WXARCHIVE_EYUN_URL). Serves "
                    "/healthz, /readyz and /metrics on its own port. Stops cleanly on Ctrl-C or SIGTERM.")
    ops_endpoint_flags(worker, "WORKER", 8082)

    sink = leaf(commands, "sink", _cmd_sink, help="run the ClickHouse sink: the archive's topics into its tables",
        description="Read PREFIX.raw, .messages, .events, .moderation, .contacts and .dlq and insert them into the "
                    "wxarchive database (migrated first), in blocks of WXARCHIVE_SINK_BATCH_ROWS rows or "
                    "WXARCHIVE_SINK_BATCH_SECONDS seconds, each with a deduplication token; offsets are committed "
                    "only after the insert. While ClickHouse is down it retries and keeps its offsets. With the "
                    "embedded engine (chdb://) this process owns the directory: query through it or stop it. "
                    "Serves /healthz, /readyz and /metrics on its own port. Stops cleanly on Ctrl-C or SIGTERM.")
    ops_endpoint_flags(sink, "SINK", 8083)


def _cmd_edge(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses
    import logging

    from ingest.server import build_app
    from ingest.service import run

    changes = {k: v for k, v in (("edge_host", args.host), ("edge_port", args.port), ("edge_spool", args.spool)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    app = build_app(settings, insecure=args.insecure)
    if args.insecure and not (settings.edge_secret or settings.edge_account_secrets):
        logging.getLogger("wxarchive.edge").warning("edge running without a secret: anyone who can reach it may post")
    print(f"edge listening on http://{settings.edge_host}:{settings.edge_port}/callback "
          f"(Kafka {settings.kafka_bootstrap}, spool {'on' if settings.edge_spool else 'off'})", flush=True)
    run(app, settings)
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from streams.service import run

    changes = {k: v for k, v in (("worker_host", args.host), ("worker_port", args.port)) if v is not None}
    require_free_port(settings.worker_host if args.host is None else args.host,
                      settings.worker_port if args.port is None else args.port,
                      "choose another with --port or WXARCHIVE_WORKER_PORT")
    run(dataclasses.replace(settings, **changes))
    return 0


def _cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from sinks.service import run

    changes = {k: v for k, v in (("sink_host", args.host), ("sink_port", args.port)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    require_free_port(settings.sink_host, settings.sink_port, "choose another with --port or WXARCHIVE_SINK_PORT")
    run(settings)
    return 0
