"""`gpucensus-collector token create|list|revoke|uses`: enrollment tokens.

`create --site S [--uses N] [--ttl 24h] [--node-id NODE]` prints a token once. Without `--node-id` each of its N
uses enrolls one node id that is not enrolled yet (a site token for a fleet: `--uses 200`); with it, the token is
single use, only that node id may use it, and if that node is enrolled the token re-keys it (its old key is
revoked, the change recorded). Only the token's SHA-256 hash is stored; a token is named by its public id, the
first 12 hex digits of that hash (`list`, `revoke ID`, `uses ID`, and the actor `token:ID` of node events).
"""

from __future__ import annotations

import argparse
import sys

from gpucensus.collector import registry
from gpucensus.collector.commands.common import command_group, emit, iso, now, store_action, store_from_args
from gpucensus.collector.store.base import EnrollmentToken


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "token", "enrollment tokens for new nodes")
    help = "create an enrollment token for a site (printed once); --uses N enrolls up to N new nodes"
    create = store_action(group, "create", help, run_create)
    create.add_argument("--site", required=True, help="the site the enrolling nodes will be bound to")
    create.add_argument(
        "--uses", type=int, default=1, metavar="N", help="how many new nodes it may enroll (default 1: single use)"
    )
    create.add_argument("--ttl", default="24h", help="lifetime: N followed by s, m, h or d (default 24h)")
    create.add_argument(
        "--node-id",
        default="",
        metavar="NODE",
        help="only this node id may use the (single-use) token; if it is enrolled, the token re-keys it "
        "(revoking its old key)",
    )
    help = "list tokens: id, site, node restriction, uses left/total, expiry, revoked, created"
    store_action(group, "list", help, run_list, formatted=True)
    revoke = store_action(group, "revoke", "revoke a token: it enrolls no further node", run_revoke)
    revoke.add_argument("token_id", metavar="TOKEN-ID", help="the token's id (see: token list)")
    help = "the record of a token's uses (node id, key, time), oldest first"
    store_action(group, "uses", help, run_uses, formatted=True).add_argument(
        "token_id", metavar="TOKEN-ID", nargs="?", help="one token (see: token list); all tokens without it"
    )


def run_create(args: argparse.Namespace) -> int:
    ttl = registry.parse_ttl(args.ttl)
    token, record = registry.new_token(args.site, now(), ttl, args.node_id, args.uses)
    with store_from_args(args) as store:
        store.add_token(record)
    print(token)
    only = f" and node {record.node_id} only" if record.node_id else ""
    uses = "single-use" if record.uses == 1 else f"{record.uses}-use"
    print(f"{uses} enrollment token {record.public_id} for site {record.site}{only}, valid until "
          f"{iso(record.expires_at)}; it is shown only once", file=sys.stderr)  # fmt: skip
    return 0


def _state(token: EnrollmentToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.remaining == 0:
        return "used up"
    return "expired" if token.expires_at <= now() else "usable"


def run_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        tokens = store.list_tokens()
    headers = ("id", "site", "node", "uses_left", "uses", "expires", "revoked", "created", "state")
    rows = [
        (t.public_id, t.site, t.node_id, t.remaining, t.uses, iso(t.expires_at), iso(t.revoked_at),
         iso(t.created_at), _state(t))
        for t in tokens
    ]  # fmt: skip
    emit(args.format, headers, rows)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        token = store.revoke_token(args.token_id, now())
    if token.revoked_at is not None:
        print(f"token {token.public_id}: already revoked at {iso(token.revoked_at)}")
    else:
        print(f"token {token.public_id} (site {token.site}) revoked; {token.remaining} of {token.uses} uses unused")
    return 0


def run_uses(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        token_hash = store.find_token(args.token_id).token_hash if args.token_id else None
        uses = store.token_uses(token_hash)
    width = None if args.format == "json" else 16
    rows = [(iso(u.used_at), u.token_hash[:12], u.node_id, u.keyid[:width]) for u in uses]
    emit(args.format, ("time", "token", "node", "key"), rows)
    return 0
