"""`gpucensus-collector node list|enroll|revoke|rekey|move|events`: enrolled nodes, their last attestation,
staleness; pre-registration of a new node without a token; key revocation; the explicit, recorded re-keying and
moving of a node (a token never does either), and the record of every such change."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpucensus.collector.commands.common import (
    command_group,
    config_from_args,
    emit,
    iso,
    now,
    operator_actor,
    reason_text,
    store_action,
    store_from_args,
)
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.registry import validate_id
from gpucensus.collector.store.base import NodeStatus, RecordNotFoundError
from gpucensus.common.safe_text import printable


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "node", "enrolled nodes")
    help = "list nodes with their last attestation and state (ok, stale, revoked)"
    store_action(group, "list", help, run_list, formatted=True).add_argument("--site", help="only this site")
    revoke = store_action(group, "revoke", "revoke a node key: its attestations are refused from now on", run_revoke)
    revoke.add_argument("key", metavar="KEYID|NODE", help="a key id, or a node id (revokes all its active keys)")
    help = "pre-register a new node: bind its public key at a site without a token (recorded)"
    enroll = store_action(group, "enroll", help, run_enroll)
    enroll.add_argument("--node-id", required=True, metavar="NODE", help="the new node's id (not enrolled yet)")
    enroll.add_argument("--site", required=True, help="the site the node is at")
    enroll.add_argument("--public-key", required=True, metavar="FILE", help="the node's public key (node.key.pub)")
    help = "bind a new public key to an enrolled node; its old key is revoked (recorded)"
    rekey = store_action(group, "rekey", help, run_rekey)
    rekey.add_argument("node", help="the node id")
    rekey.add_argument("--public-key", required=True, metavar="FILE", help="the node's new key (node.key.pub)")
    rekey.add_argument("--reason", default="", help="kept with the record, e.g. 'disk replaced'")
    move = store_action(group, "move", "move a node to another site (recorded)", run_move)
    move.add_argument("node", help="the node id")
    move.add_argument("--site", required=True, help="the site the node is now at")
    move.add_argument("--reason", default="", help="kept with the record, e.g. 'relocated to Warsaw'")
    help = "the record of enrollments, re-keyings, moves and revocations, oldest first"
    store_action(group, "events", help, run_events, formatted=True).add_argument("node", nargs="?", help="one node")


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
        revoked = [k.keyid for k in keys if store.revoke_key(k.keyid, when, operator_actor())]
    if not revoked:
        print(f"{printable(args.key)}: already revoked")
    for keyid in revoked:
        print(f"key {keyid} revoked")
    return 0


def read_public_key(path: str) -> tuple[str, str]:
    """(keyid, PEM) of an Ed25519 public key file; ConfigError naming the file if it is not one."""
    # here, not at the top: only the actions that read a key load cryptography (collector/commands/__init__.py)
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from gpucensus.common import verify

    try:
        public_key = verify.public_key_from_pem(Path(path).read_bytes())
    except OSError as err:
        raise ConfigError(f"cannot read the public key {path}: {err.strerror}") from err
    except ValueError as err:
        raise ConfigError(
            f"{path} is not an Ed25519 public key: {err}",
            hint="use the node.key.pub that gpucensus-agent keygen wrote next to the node's key",
        ) from err
    pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return verify.public_key_id(public_key), pem


def run_enroll(args: argparse.Namespace) -> int:
    node_id, site = validate_id("node", args.node_id), validate_id("site", args.site)
    keyid, pem = read_public_key(args.public_key)
    with store_from_args(args) as store:
        store.preregister_node(keyid, pem, node_id, site, now(), operator_actor())
    print(f"node {node_id} enrolled at site {site} with key {keyid}")
    return 0


def run_rekey(args: argparse.Namespace) -> int:
    node_id, reason = validate_id("node", args.node), reason_text(args.reason)
    keyid, pem = read_public_key(args.public_key)
    with store_from_args(args) as store:
        old = [k.keyid for k in store.list_keys() if k.node_id == node_id and not k.revoked]
        key = store.rekey_node(node_id, keyid, pem, now(), operator_actor(), reason)
    print(f"node {node_id} at site {key.site}: key {keyid} bound")
    for keyid in old:
        print(f"key {keyid} revoked")
    return 0


def run_move(args: argparse.Namespace) -> int:
    node_id, site, reason = validate_id("node", args.node), validate_id("site", args.site), reason_text(args.reason)
    with store_from_args(args) as store:
        moved = store.move_node(node_id, site, now(), operator_actor(), reason)
    print(f"node {node_id} moved to site {site}" if moved else f"node {node_id} is at site {site} already")
    return 0


def run_events(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        events = store.node_events(args.node)
    width = None if args.format == "json" else 16  # key ids in full in JSON
    rows = [
        (iso(e.created_at), e.node_id, e.event, e.keyid[:width], e.old_keyid[:width], e.site, e.old_site, e.actor,
         e.reason)
        for e in events
    ]  # fmt: skip
    emit(args.format, ("time", "node", "event", "key", "old_key", "site", "old_site", "actor", "reason"), rows)
    return 0
