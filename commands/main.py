"""The `wxarchive` command: the root parser and `main`. Each command group registers its subcommands from its
own module; a handler parses flags and calls one module that does the job. This package is the composition
root: the only one that imports across every component.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from commands import api, archive, components, config, eyun, kafka, keywords, tokens, up
from commands.common import FORMATTER, Handler, load_settings
from wxarchive import __version__, logs
from wxarchive.errors import WxarchiveError

__all__ = ["build_parser", "main"]

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
  wxarchive tokens create --name alice --role compliance
                                      a bearer token for the API, printed once
  wxarchive api                       the read-side HTTP API on :8084 (docs at /docs)
  wxarchive simulate --count 10000 --url http://127.0.0.1:8080/callback/s3cret
  wxarchive config                    print the effective configuration (secrets masked)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wxarchive", description=DESCRIPTION, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--version", action="version", version=f"wxarchive {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (up, kafka, components, api, archive, keywords, tokens, eyun, config):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Handler = args.run
    try:
        settings = load_settings(args)
        logs.configure(settings.log_level, settings.log_format)
        return run(args, settings)
    except WxarchiveError as exc:
        print(f"wxarchive: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
