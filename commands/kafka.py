"""`wxarchive kafka fetch|start|stop|status`: the local Apache Kafka broker (deploy/kafka_broker.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.common import Subcommands, leaf
from wxarchive.config import Settings

if TYPE_CHECKING:
    from deploy.kafka_broker import LocalKafka

def register(commands: Subcommands) -> None:
    kafka = commands.add_parser("kafka", help="manage the local Apache Kafka broker (embedded mode)",
                                description="The local single-node Kafka broker, run from Maven Central jars. "
                                            "Its data, logs and pid file live in DATA_DIR/kafka.")
    actions = kafka.add_subparsers(dest="action", metavar="ACTION", required=True)
    leaf(actions, "fetch", _cmd_kafka_fetch, help="download the broker's jars with Maven (once)")
    start = leaf(actions, "start", _cmd_kafka_start, help="start the broker and wait until it serves requests")
    start.add_argument("--host", help="address to listen on (default: the host of WXARCHIVE_KAFKA_BOOTSTRAP)")
    start.add_argument("--port", type=int, help="broker port (default: the port of WXARCHIVE_KAFKA_BOOTSTRAP)")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness (default 90)")
    stop = leaf(actions, "stop", _cmd_kafka_stop, help="stop the broker (SIGTERM, then SIGKILL)")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    leaf(actions, "status", _cmd_kafka_status, help="is the broker running and answering?")


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
