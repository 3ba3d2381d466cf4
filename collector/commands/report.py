"""`gpucensus-collector report`: the policy evaluation of the live inventory, stale nodes, ingest findings.

`--at TIME` evaluates the inventory as it was at that instant (`collector.history`); `--history --from D1 --to D2
--every 1d|1w|1mo` the series of it. Exit 0 when the inventory (at the last instant) complies with the policy,
1 on policy violations, 2 bad input; stale nodes and ingest findings are listed but do not change the exit code.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from gpucensus.collector import history
from gpucensus.collector.commands.evaluate import add_policy_arguments, parse_as_of
from gpucensus.collector.config import CollectorConfig, load_config
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.location import status as location
from gpucensus.collector.policy import Pack, evaluate, load_pack, parse_scenario
from gpucensus.collector.policy.report import render_report
from gpucensus.collector.store import open_store
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue


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
    parser.add_argument("--at", default=None, metavar="TIME",
                        help="the inventory as it was at TIME (YYYY-MM-DDTHH:MM:SSZ, or a date: the end of that day, "
                        "UTC); --as-of still sets the date rules are evaluated at (default: its date)")  # fmt: skip
    parser.add_argument("--history", action="store_true",
                        help="per-country and per-entity TPP, H100e, counted TPP, allocation used and status at each "
                        "instant from --from to --to, every --every")  # fmt: skip
    parser.add_argument("--from", dest="start", default=None, metavar="TIME", help="first instant of --history")
    parser.add_argument(
        "--to", dest="end", default=None, metavar="TIME", help="last instant of --history (default: now)"
    )
    parser.add_argument("--every", default="1w", choices=history.STEPS, help="step of --history (default: 1w)")
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
    if args.history:
        return _history(args, config, pack, now)
    if args.start is not None or args.end is not None:
        raise ConfigError("--from and --to go with --history")
    at = history.parse_instant(args.at) if args.at is not None else None
    if at is not None and as_of is None:
        as_of = at.date()
    store = open_store(config.store.kind, **config.store.open_options())
    try:
        inventory = store.inventory(now) if at is None else store.inventory_at(at)
        now_only = at is None  # stale nodes and ingest findings describe the present: not part of a past instant
        stale = store.stale_nodes(now, config.nodes.stale_intervals, config.nodes.interval_seconds) if now_only else []
        ingest = store.list_findings(limit=args.findings) if args.findings and now_only else []
        # location verdicts are the present's too: a past instant is evaluated where its sites are registered
        locations = location.location_rows(store, [s.id for s in store.list_sites()]) if now_only else []
        unknown = pack.location_implausible_as_unknown and now_only
        moved = location.implausible_nodes(store.node_locations()) if unknown else ()
        split = store.location_inventory(now, moved, location.UNKNOWN_SUFFIX) if moved else None
    finally:
        store.close()
    scenario = parse_scenario(inventory, "live inventory" if at is None else f"inventory at {history.iso(at)}", as_of)
    catalogue, rules = load_catalogue(), load_rules()
    if split is None:
        result = evaluate(scenario, pack, catalogue, rules)
    else:  # the pack's [location] implausible_as_unknown, with implausibly located nodes
        split_scenario = parse_scenario(split, "live inventory", as_of)
        result = location.count_in_unknown(split_scenario, lambda s: evaluate(s, pack, catalogue, rules))
    second = evaluate(scenario, other, catalogue, rules) if other else None
    sys.stdout.write(render_report(result, second, stale, ingest, now, args.format, locations))
    return 0 if result.compliant else 1


def _history(args: argparse.Namespace, config: CollectorConfig, pack: Pack, now: datetime) -> int:
    if args.start is None:
        raise ConfigError("--history needs --from", hint="e.g. --history --from 2026-01-01 --to 2026-06-30 --every 1w")
    if args.compare or args.as_of or args.at:
        raise ConfigError("--history evaluates each instant at its own date: no --compare, --as-of or --at")
    start = history.parse_instant(args.start, "--from")
    end = history.parse_instant(args.end, "--to") if args.end is not None else now
    points = history.instants(start, end, args.every)
    store = open_store(config.store.kind, **config.store.open_options())
    try:
        series = history.history(store, points, pack, load_catalogue(), load_rules())
    finally:
        store.close()
    sys.stdout.write(history.render_history(pack, series, args.every, args.format))
    return 0 if not series or series[-1].violations == 0 else 1
