"""`gpucensus-collector prune [--days N]`: delete compact statements older than `[retention] compact_days`.

A compact statement ("inventory unchanged since full inventory N") only proves that its node was reporting; what
it repeats stays stored as the full inventory it names. Pruning keeps every full inventory, each key's chain
head, every compact statement with a finding, every log hash (inclusion and consistency proofs keep working) and
all findings and evidence; it records the sequences it removed so `export` can tell an auditor that a chain gap
is pruning (docs/auditors.md).
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from gpucensus.collector.commands.common import add_store_arguments, config_from_args, iso, now, store_from_args
from gpucensus.common.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="delete compact statements older than [retention] compact_days (never a full inventory)",
        description="Delete compact statements received more than N days ago ([retention] compact_days, default "
        "90), except each key's latest statement and those with findings. Full inventories, log hashes, findings "
        "and evidence are kept.",
    )
    add_store_arguments(parser)
    parser.add_argument("--days", type=int, metavar="N", help="override [retention] compact_days")
    parser.set_defaults(func=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    days = config.retention.compact_days if args.days is None else args.days
    if days < 0:
        raise ConfigError(f"--days {days} must not be negative")
    if days == 0:
        print("nothing pruned: [retention] compact_days is 0 (keep compact statements)")
        return 0
    when = now()
    before = when - timedelta(days=days)
    with store_from_args(args, config) as store:
        removed = store.prune_compact(before, when)
    print(f"pruned {removed} compact statement(s) received before {iso(before)}")
    return 0
