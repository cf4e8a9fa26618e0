"""`wxarchive config [--describe]`: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse

from commands.common import Subcommands, leaf
from wxarchive.config import Settings, describe, env_name


def register(commands: Subcommands) -> None:
    cfg = leaf(commands, "config", _cmd_config, help="print the effective configuration (secrets masked)")
    cfg.add_argument("--describe", action="store_true", help="list every setting: variable, flag, default, meaning")


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    if args.describe:
        for env, flag, default, help_text in describe():
            print(f"{env}\n  flag: {flag}\n  default: {default or '(empty)'}\n  {help_text}")
        return 0
    for name, value in settings.masked().items():
        print(f"{env_name(name)}={value}")
    return 0
