"""The collector's subcommands, an explicit list: each module exposes `register(subparsers)`."""

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
