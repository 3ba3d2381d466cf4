"""`gpucensus-collector`: the collector's composition root. Subcommands live in `collector/commands/<name>.py`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent.errors import GpucensusError
from collector import __version__
from collector.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucensus-collector",
        description="Receive and verify gpucensus attestations, keep the registry and inventory, "
        "and evaluate it against export-control policy packs.",
    )
    parser.add_argument("--version", action="version", version=f"gpucensus-collector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GpucensusError as err:
        print(f"gpucensus-collector: error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
