"""`gpucensus-collector report`: the policy evaluation of the live inventory, stale nodes, ingest findings.

Exit 0 when the inventory complies with the policy, 1 on policy violations, 2 bad input; stale nodes and ingest
findings are listed but do not change the exit code.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from collector.commands.evaluate import add_policy_arguments, parse_as_of
from collector.config import load_config
from collector.errors import ConfigError
from collector.location import status as location
from collector.policy import evaluate, load_pack, parse_scenario
from collector.policy.report import render_report
from collector.store import open_store
from common.accounting import load_rules
from common.catalogue import load_catalogue


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="evaluate the live inventory against a policy pack; stale nodes and ingest findings",
        description="Evaluate the collector's live inventory (from its store) under a policy pack, exactly as "
        "`evaluate` does for a scenario file, and list stale nodes and the stored ingest findings. "
        "Exit 0 compliant, 1 policy violations, 2 bad input.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", default=None, metavar="FILE", help="collector config file (store, policy)")
    where.add_argument("--data-dir", default=None, metavar="DIR", help="SQLite data directory of the collector")
    add_policy_arguments(parser, policy_required=False)
    parser.add_argument("--findings", type=int, default=50, metavar="N", help="newest N ingest findings (50)")
    parser.set_defaults(func=handle)


def _now() -> datetime:
    return datetime.now(UTC)


def handle(args: argparse.Namespace) -> int:
    overrides = {}
    if args.data_dir is not None:
        if not Path(args.data_dir).is_dir():
            raise ConfigError(f"--data-dir {args.data_dir}: no such directory")
        overrides = {"store": {"kind": "sqlite", "data_dir": args.data_dir}}
    if args.findings < 0:
        raise ConfigError(f"--findings must not be negative, got {args.findings}")
    config = load_config(args.config, overrides=overrides)
    pack = load_pack(args.policy or config.policy.pack)
    other = load_pack(args.compare) if args.compare else None
    as_of = parse_as_of(args.as_of)
    now = _now()
    store = open_store(config.store.kind, **config.store.open_options())
    try:
        inventory = store.inventory(now)
        stale = store.stale_nodes(now, config.nodes.stale_intervals, config.nodes.interval_seconds)
        ingest = store.list_findings(limit=args.findings) if args.findings else []
        locations = location.location_rows(store, [s.id for s in store.list_sites()])
        moved = location.implausible_nodes(store.node_locations()) if pack.location_implausible_as_unknown else ()
        split = store.location_inventory(now, moved, location.UNKNOWN_SUFFIX) if moved else None
    finally:
        store.close()
    scenario = parse_scenario(inventory, "live inventory", as_of)
    catalogue, rules = load_catalogue(), load_rules()
    if split is None:
        result = evaluate(scenario, pack, catalogue, rules)
    else:  # the pack's [location] implausible_as_unknown, with implausibly located nodes
        split_scenario = parse_scenario(split, "live inventory", as_of)
        result = location.count_in_unknown(split_scenario, lambda s: evaluate(s, pack, catalogue, rules))
    second = evaluate(scenario, other, catalogue, rules) if other else None
    sys.stdout.write(render_report(result, second, stale, ingest, now, args.format, locations))
    return 0 if result.compliant else 1
