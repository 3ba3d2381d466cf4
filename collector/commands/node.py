"""`gpucensus-collector node list|revoke`: enrolled nodes, their last attestation, staleness; key revocation."""

from __future__ import annotations

import argparse

from agent.safe_text import printable
from collector.commands.common import (
    command_group,
    config_from_args,
    emit,
    iso,
    now,
    store_action,
    store_from_args,
)
from collector.store.base import NodeStatus, RecordNotFoundError


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "node", "enrolled nodes")
    help = "list nodes with their last attestation and state (ok, stale, revoked)"
    store_action(group, "list", help, run_list, formatted=True).add_argument("--site", help="only this site")
    revoke = store_action(group, "revoke", "revoke a node key: its attestations are refused from now on", run_revoke)
    revoke.add_argument("key", metavar="KEYID|NODE", help="a key id, or a node id (revokes all its active keys)")


def _state(node: NodeStatus, stale: set[str]) -> str:
    if node.revoked:
        return "revoked"
    if node.node_id in stale:
        return "stale" if node.last_attested_at else "stale (never attested)"
    return "ok" if node.last_attested_at else "enrolled"


def run_list(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    with store_from_args(args, config) as store:
        nodes = store.list_nodes(args.site)
        stale = {n.node_id for n in store.stale_nodes(now(), config.nodes.stale_intervals,
                                                       config.nodes.interval_seconds)}  # fmt: skip
    rows = [
        (n.node_id, n.site, n.keyid[:16], iso(n.last_attested_at), n.last_sequence, n.gpus, _state(n, stale))
        for n in nodes
    ]
    emit(args.format, ("node", "site", "key", "last_attested", "sequence", "gpus", "state"), rows)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    when = now()
    with store_from_args(args) as store:
        key = store.get_key(args.key)
        keys = [key] if key else [k for k in store.list_keys() if k.node_id == args.key]
        if not keys:
            raise RecordNotFoundError(f"no key or node {args.key!r}", hint="see: gpucensus-collector node list")
        revoked = [k.keyid for k in keys if store.revoke_key(k.keyid, when)]
    if not revoked:
        print(f"{printable(args.key)}: already revoked")
    for keyid in revoked:
        print(f"key {keyid} revoked")
    return 0
