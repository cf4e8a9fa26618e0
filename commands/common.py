"""What every command shares: the configuration flags, the leaf-command builder, small argument types.

The settings' help texts (wxarchive/config.py) are shared by every command: a flag one of them names is named
with its command (`wxarchive edge --insecure`), so no --help offers a flag its command does not have.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from wxarchive.config import Settings, env_name, flag_name

Subcommands = Any  # argparse's _SubParsersAction, which it does not export
Handler = Callable[[argparse.Namespace, Settings], int]
FORMATTER = argparse.RawDescriptionHelpFormatter


def config_flags() -> argparse.ArgumentParser:
    """The configuration flags: one per setting, its help from the setting."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (each flag overrides its WXARCHIVE_* variable)")
    for f in fields(Settings):
        group.add_argument(flag_name(f.name), dest=f"cfg_{f.name}", metavar=f.name.split("_")[-1].upper(),
                           help=f"{f.metadata['help']} [{env_name(f.name)}]")
    return parent


def leaf(group: Subcommands, name: str, run: Handler, help: str, **details: str) -> argparse.ArgumentParser:
    """A runnable command: every one takes the configuration flags."""
    command: argparse.ArgumentParser = group.add_parser(name, parents=[config_flags()], formatter_class=FORMATTER,
                                                        help=help, **details)
    command.set_defaults(run=run)
    return command


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    return Settings.load(overrides=overrides)


def ops_endpoint_flags(command: argparse.ArgumentParser, component: str, port: int) -> None:
    command.add_argument("--host", help=f"address of the health and metrics endpoint (default WXARCHIVE_{component}_HOST)")
    command.add_argument("--port", type=int,
                         help=f"port of the health and metrics endpoint (default WXARCHIVE_{component}_PORT, {port})")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value
