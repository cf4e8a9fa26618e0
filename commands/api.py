"""`wxarchive api`: the read side's HTTP API (api/service.py), in its own process."""

from __future__ import annotations

import argparse
import dataclasses

from commands.common import Subcommands, leaf
from wxarchive.config import Settings
from wxarchive.net import require_free_port


def register(commands: Subcommands) -> None:
    api = leaf(commands, "api", _cmd_api, help="run the read-side HTTP API: conversations, SQL, audit, the SCRM's endpoints",
        description="Serve the archive over HTTP: the native API under /api/v1 (accounts, conversations, transcripts, "
                    "one message with its raw callback, read-only SQL, the audit trail), the SCRM's own "
                    "/wechat_api/* endpoints in the SCRM's shapes, OpenAPI at /openapi.json and interactive docs at "
                    "/docs, and /healthz, /readyz, /metrics. Every route but the health ones takes a bearer token "
                    "(`wxarchive tokens create`); every request that reads or changes archive content is audited on "
                    "PREFIX.audit before it is answered, or refused with 503. The archive is read over ClickHouse's "
                    "HTTP interface: the door of the running sink (embedded mode), or WXARCHIVE_READ_DSN / a "
                    "ClickHouse server. `wxarchive up` starts it for you.",
        epilog="examples:\n"
               "  wxarchive api                                 on 127.0.0.1:8084 (WXARCHIVE_API_HOST, _PORT)\n"
               "  TOKEN=$(wxarchive tokens create --name alice --role viewer)\n"
               "  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8084/api/v1/accounts\n"
               "  wxarchive api --insecure                      no tokens, loopback only (every caller is admin)\n"
               "see docs/api.md for the routes, roles, audit records and the SCRM mapping")
    api.add_argument("--host", help="address to listen on (default WXARCHIVE_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (default WXARCHIVE_API_PORT, 8084)")
    api.add_argument("--insecure", action="store_true",
                     help="serve without tokens, every caller an admin; refused unless the host is a loopback "
                          "address; every audit record names the principal 'insecure'")


def _cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from api.service import loopback, run

    changes = {k: v for k, v in (("api_host", args.host), ("api_port", args.port)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    if args.insecure and not loopback(settings.api_host):
        from wxarchive.errors import ConfigError

        raise ConfigError(f"--insecure serves the archive without tokens, so only on a loopback address, not "
                          f"{settings.api_host}")
    require_free_port(settings.api_host, settings.api_port, "choose another with --port or WXARCHIVE_API_PORT")
    run(settings, insecure=args.insecure)
    return 0
