"""The collector's subcommands, an explicit list: each module exposes `register(subparsers)`."""

from __future__ import annotations

from collector.commands import entity, evaluate, export, gpu, landmark, log, node, policy, report, serve, site, token

COMMANDS: list = [serve, evaluate, policy, report, entity, site, token, gpu, node, landmark, log, export]
