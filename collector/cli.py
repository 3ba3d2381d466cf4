"""`gpucensus-collector`: the collector's composition root. Subcommands live in `collector/commands/<name>.py`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from collector import __version__
from collector.commands import COMMANDS
from common.cli_support import build_parser, run_command

DESCRIPTION = (
    "Receive and verify gpucensus attestations, keep the registry and inventory, "
    "and evaluate it against export-control policy packs."
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser("gpucensus-collector", DESCRIPTION, __version__, COMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
