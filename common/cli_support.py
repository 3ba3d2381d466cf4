"""What every gpucensus console script shares: the subcommand parser and the one place errors are printed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType

from gpucensus.common.errors import GpucensusError
from gpucensus.common.safe_text import escaped_stdio


def build_parser(prog: str, description: str, version: str, commands: Iterable[ModuleType]) -> argparse.ArgumentParser:
    """A parser with `--version` and one subparser per command module (each exposes `register(subparsers)`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {version}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        command.register(sub)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None, exit_code: int | None = None) -> int:
    """Parse, run the chosen handler, and turn a `GpucensusError` into one message and its exit code.

    `exit_code` overrides the error's own code (the auditor's tool reports every unusable input as 2). Everything
    the command writes to stdout and stderr, argparse's messages included, has its control characters escaped.
    """
    with escaped_stdio():
        args = parser.parse_args(argv)
        try:
            return int(args.func(args) or 0)
        except GpucensusError as err:
            print(f"{parser.prog}: error: {err.message}", file=sys.stderr)
            if err.hint:
                print(f"hint: {err.hint}", file=sys.stderr)
            return err.exit_code if exit_code is None else exit_code
        except KeyboardInterrupt:
            return 130
