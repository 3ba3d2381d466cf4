"""`gpucensus-agent spool list|retry`: inspect the agent's spool and send rejected envelopes again.

Both work on the spool named by the agent's config (`spool.path`, default `<node.state_dir>/spool.db`) or by
`--spool FILE`, and are safe while `gpucensus-agent run` is running. `list` opens the file read-only; a damaged
spool is an error (exit 5) for both, and the file is left as it is. Nothing is ever deleted: `retry` only puts
rejected rows back to `pending`, and the next delivery sends them in sequence order.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from gpucensus.agent import config as agent_config
from gpucensus.agent.render import spool_table
from gpucensus.agent.spool import DELIVERED, PENDING, QUARANTINED, REJECTED, Spool
from gpucensus.common.errors import ConfigError
from gpucensus.common.safe_text import printable

STATES = ("all", PENDING, REJECTED, QUARANTINED, DELIVERED)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spool",
        help="inspect the spool of signed envelopes, or send rejected ones again",
        description="The spool holds every signed envelope until the collector acknowledges it (delivered), "
        "refuses it (rejected, with the reason) or it is found corrupted (quarantined). Nothing is deleted here.",
    )
    actions = parser.add_subparsers(dest="spool_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list the spool's envelopes and their state")
    _add_location(listing)
    listing.add_argument("--state", choices=STATES, default="all", help="only rows in this state (default all)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=handle_list)
    retry = actions.add_parser(
        "retry",
        help="put rejected envelopes back to pending so the next run resends them",
        description="Put one rejected envelope (by sequence number) or all of them back to pending. The "
        "running agent (or the next `run`) resends them in sequence order. Deletes nothing.",
    )
    _add_location(retry)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("sequence", nargs="?", type=int, metavar="SEQUENCE", help="sequence number to resend")
    which.add_argument("--all-rejected", action="store_true", help="resend every rejected envelope")
    retry.add_argument("--keyid", default="", metavar="PREFIX", help="only rows of the key id starting with this")
    retry.set_defaults(func=handle_retry)


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="agent TOML (its spool.path / node.state_dir)")
    parser.add_argument("--spool", metavar="FILE", help="the spool database itself (overrides the config)")


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Spool:
    config = agent_config.load(args.config, overrides={"spool.path": args.spool})
    return Spool(
        config.spool_file,
        config.spool_max_bytes,
        keep_delivered=config.spool_keep_delivered,
        must_exist=True,
        read_only=read_only,
    )


def handle_list(args: argparse.Namespace) -> int:
    spool = _open(args, read_only=True)  # never writes to the file, not even its header
    try:
        rows = spool.entries(None if args.state == "all" else args.state)
        counts = spool.counts()
    finally:
        spool.close()
    if args.format == "json":
        document = {"spool": str(spool.path), "counts": counts, "envelopes": [asdict(r) for r in rows]}
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(spool_table(str(spool.path), rows, counts))
    return 0


def handle_retry(args: argparse.Namespace) -> int:
    spool = _open(args)
    try:
        rows = spool.retry_rejected(None if args.all_rejected else args.sequence, args.keyid)
        if not rows and not args.all_rejected:
            states = sorted({r.state for r in spool.entries() if r.sequence == args.sequence})
            found = f"is {', '.join(states)}, not rejected" if states else "is not in the spool"
            raise ConfigError(
                f"sequence {args.sequence} {found}: nothing to retry",
                hint="`gpucensus-agent spool list --state rejected` shows what can be retried",
            )
    finally:
        spool.close()
    for row in rows:
        reason = printable(row.error)
        print(f"sequence {row.sequence} (key {row.keyid[:16]}) is pending again; it was rejected: {reason}")
    print(f"gpucensus-agent: {len(rows)} envelope(s) will be resent on the next delivery", file=sys.stderr)
    return 0
