"""`gpucensus-collector`: the collector's composition root. Subcommands live in `collector/commands/<name>.py`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gpucensus.collector import __version__
from gpucensus.common.cli_support import build_parser, run_command

# What only `pip install 'gpucensus[collector]'` brings (pyproject.toml): without it the collector cannot serve or
# use a PostgreSQL store. Each is imported by the command that needs it (`serve`, opening a PostgreSQL store), so
# the error comes from running a command, not from building the parser.
COLLECTOR_EXTRA_MODULES = frozenset({"psycopg", "grpc_reflection"})

DESCRIPTION = (
    "Receive and verify gpucensus attestations, keep the registry and inventory, "
    "and evaluate it against export-control policy packs."
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from gpucensus.collector.commands import COMMANDS

        return run_command(build_parser("gpucensus-collector", DESCRIPTION, __version__, COMMANDS), argv)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in COLLECTOR_EXTRA_MODULES:
            raise
        print(f"gpucensus-collector: error: the Python module {err.name!r} is not installed", file=sys.stderr)
        print("hint: install the collector with its extra: pip install 'gpucensus[collector]'", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
