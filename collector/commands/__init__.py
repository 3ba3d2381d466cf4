"""The collector's subcommands, an explicit list: each module exposes `register(subparsers)`."""

from __future__ import annotations

from collector.commands import dashboard_password, entity, evaluate, gpu, node, policy, report, serve, site, token

COMMANDS: list = [serve, evaluate, policy, report, entity, site, token, gpu, node, dashboard_password]
