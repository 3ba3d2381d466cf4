"""The agent's subcommands, an explicit list: each module exposes `register(subparsers)`.

A module's `register` adds its parser and sets `func` to a callable taking the parsed args and returning an exit
code. Every parser is built on every run, so gRPC, the protos and the uplink are imported by the handlers of `run`
and `check`, not at the top of their modules (tests/integration/test_cli_startup.py).
"""

from __future__ import annotations

from gpucensus.agent.commands import attest, check, classify, keygen, run, snapshot, spool

COMMANDS = [snapshot, classify, keygen, attest, run, check, spool]
