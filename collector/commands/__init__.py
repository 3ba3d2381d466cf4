"""The collector's subcommands, an explicit list: each module exposes `register(subparsers)`.

Every command's parser is built on every run, so a module imports at its top only what building its parser and
its light handlers need; gRPC, the protos, the metrics library, cryptography and the dashboard are imported inside
the handlers that use them, and the store package imports a database driver only when a store of its kind opens
(tests/integration/test_cli_startup.py checks what `report` on a SQLite store loads).
"""

from __future__ import annotations

from gpucensus.collector.commands import (
    dashboard_password,
    entity,
    evaluate,
    export,
    gpu,
    landmark,
    log,
    node,
    policy,
    prune,
    report,
    serve,
    site,
    token,
)

COMMANDS: list = [
    serve,
    evaluate,
    policy,
    report,
    entity,
    site,
    token,
    gpu,
    node,
    landmark,
    log,
    export,
    prune,
    dashboard_password,
]
