"""`gpucensus-agent`: the agent's composition root. Each subcommand lives in `agent/commands/<name>.py`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gpucensus.agent import __version__
from gpucensus.agent.commands import COMMANDS
from gpucensus.common.cli_support import build_parser, run_command

DESCRIPTION = (
    "Inventory this node's NVIDIA accelerators, classify them (ECCN 3A090, TPP, H100e) "
    "and sign attestations for a gpucensus collector."
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser("gpucensus-agent", DESCRIPTION, __version__, COMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
