"""`gpucensus-agent`: the agent's composition root. Each subcommand lives in `agent/commands/<name>.py`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import __version__
from agent.commands import COMMANDS
from agent.errors import GpucensusError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucensus-agent",
        description="Inventory this node's NVIDIA accelerators, classify them (ECCN 3A090, TPP, H100e) "
        "and sign attestations for a gpucensus collector.",
    )
    parser.add_argument("--version", action="version", version=f"gpucensus-agent {__version__}")
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
        print(f"gpucensus-agent: error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
