"""`gpucensus-collector token create --site S [--ttl 24h] [--node-id NODE]`: a single-use enrollment token,
printed once. Without `--node-id` it enrolls only a node id that is not enrolled yet; with it, only that node id
may use it, and if that node is enrolled the token re-keys it (its old key is revoked, the change recorded).

Only the token's SHA-256 hash is stored; the token itself is the one line on stdout (details go to stderr).
"""

from __future__ import annotations

import argparse
import sys

from collector import registry
from collector.commands.common import command_group, iso, now, store_action, store_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "token", "enrollment tokens for new nodes")
    help = "create a single-use enrollment token for a site (printed once)"
    create = store_action(group, "create", help, run_create)
    create.add_argument("--site", required=True, help="the site the enrolling node will be bound to")
    create.add_argument("--ttl", default="24h", help="lifetime: N followed by s, m, h or d (default 24h)")
    create.add_argument(
        "--node-id",
        default="",
        metavar="NODE",
        help="only this node id may use the token; if it is enrolled, the token re-keys it (revoking its old key)",
    )


def run_create(args: argparse.Namespace) -> int:
    ttl = registry.parse_ttl(args.ttl)
    token, record = registry.new_token(args.site, now(), ttl, args.node_id)
    with store_from_args(args) as store:
        store.add_token(record)
    print(token)
    only = f" and node {record.node_id} only" if record.node_id else ""
    print(f"single-use enrollment token for site {record.site}{only}, valid until {iso(record.expires_at)}; "
          "it is shown only once", file=sys.stderr)  # fmt: skip
    return 0
