"""What the registry subcommands share: finding the store (`--config FILE` / `--data-dir DIR`) and output."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from gpucensus.collector.config import CollectorConfig, load_config
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Store
from gpucensus.common.safe_text import printable


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="collector config file (TOML); its [store] is used")
    parser.add_argument(
        "--data-dir", metavar="DIR", help="use the embedded SQLite store in DIR (overrides the config's [store])"
    )


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def command_group(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """`gpucensus-collector NAME ACTION ...`: the group's parser; add its actions with `store_action`."""
    parser = subparsers.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def store_action(
    group: argparse._SubParsersAction,
    name: str,
    help: str,
    func: Callable[[argparse.Namespace], int],
    *,
    formatted: bool = False,
) -> argparse.ArgumentParser:
    """An action that opens the store (`--config` / `--data-dir`) and, if `formatted`, takes `--format`."""
    parser = group.add_parser(name, help=help)
    add_store_arguments(parser)
    if formatted:
        add_format_argument(parser)
    parser.set_defaults(func=func)
    return parser


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    overrides = {}
    if getattr(args, "data_dir", None):
        overrides["store"] = {"kind": "sqlite", "data_dir": args.data_dir, "path": ""}
    return load_config(getattr(args, "config", None), overrides=overrides)


@contextmanager
def store_from_args(args: argparse.Namespace, config: CollectorConfig | None = None) -> Iterator[Store]:
    config = config or config_from_args(args)
    store = open_store(config.store.kind, **config.store.open_options())
    try:
        yield store
    finally:
        store.close()


def operator_actor() -> str:
    """Who runs this command, for the records of node events: "operator:<user>@<host>"."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        user = f"uid{os.getuid()}"
    return f"operator:{user}@{socket.gethostname()}"


def reason_text(value: str) -> str:
    """An operator's free-text reason, kept in a record and printed later: no control characters."""
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise ConfigError("the reason contains control characters", hint="use plain text, e.g. 'disk replaced'")
    return value


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def emit(fmt: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as an aligned table or as a JSON list of objects keyed by the headers."""
    if fmt == "json":
        json.dump([dict(zip(headers, row, strict=True)) for row in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    cells = [[printable(c) for c in headers], *[["" if c is None else printable(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
