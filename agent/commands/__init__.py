"""The agent's subcommands, an explicit list: each module exposes `register(subparsers)`.

A module's `register` adds its parser and sets `func` to a callable taking the parsed args and returning an exit
code.
"""

from __future__ import annotations

from gpucensus.agent.commands import attest, check, classify, keygen, run, snapshot, spool

COMMANDS = [snapshot, classify, keygen, attest, run, check, spool]
