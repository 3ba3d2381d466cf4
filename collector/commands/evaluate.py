"""`gpucensus-collector evaluate`: evaluate a scenario file under a policy pack (optionally compared with another).

`--live` evaluates the collector's stored inventory instead (`--at TIME`: as it was at that instant, see
`collector.history`).

Exit 0 compliant, 1 violations, 2 bad input (a message naming the field, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime

from gpucensus.collector import history
from gpucensus.collector.commands.common import add_store_arguments, config_from_args, store_from_args
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy import Scenario, evaluate, load_pack, load_scenario, parse_scenario
from gpucensus.collector.policy.compare import render_compare
from gpucensus.collector.policy.fields import iso_date
from gpucensus.collector.policy.render import FORMATS, render
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue


def add_policy_arguments(parser: argparse.ArgumentParser, policy_required: bool) -> None:
    parser.add_argument("--policy", required=policy_required, default=None, metavar="NAME|FILE",
                        help="a shipped pack (see `policy list`) or the path of a pack file")  # fmt: skip
    parser.add_argument("--compare", default=None, metavar="NAME|FILE",
                        help="also evaluate under this pack and show, per country and entity, how the verdict "
                        "changes (the exit code follows --policy)")  # fmt: skip
    parser.add_argument("--as-of", default=None, metavar="DATE", help="evaluate as of this date (YYYY-MM-DD)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def parse_as_of(value: str | None) -> date | None:
    if value is None:
        return None
    parsed = iso_date(value)
    if parsed is None:
        raise ConfigError(f"--as-of: expected a date (YYYY-MM-DD), got {value!r}")
    return parsed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a scenario (sites, entities, devices) against a policy pack",
        description="Evaluate a scenario file (JSON, or TOML if it ends in .toml) under a policy pack: Tier 3 "
        "prohibition, LPP, Tier 2 country allocations, UVEU/NVEU limits. Exit 0 compliant, 1 violations, "
        "2 bad input.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenario", metavar="FILE", help="the scenario file")
    what.add_argument("--live", action="store_true", help="the collector's stored inventory (--config / --data-dir)")
    parser.add_argument("--at", default=None, metavar="TIME",
                        help="with --live: the inventory as it was at TIME (YYYY-MM-DDTHH:MM:SSZ, or a date: the end "
                        "of that day, UTC; default: now)")  # fmt: skip
    add_store_arguments(parser)
    add_policy_arguments(parser, policy_required=False)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if args.policy is None and not args.live:
        raise ConfigError("--policy is required with --scenario", hint="with --live it defaults to [policy] pack")
    pack = load_pack(args.policy or config_from_args(args).policy.pack)
    other = load_pack(args.compare) if args.compare else None
    as_of = parse_as_of(args.as_of)
    if not args.live:
        if args.at is not None or args.config is not None or args.data_dir is not None:
            raise ConfigError("--at, --config and --data-dir go with --live (a scenario file carries its own date)")
        scenario = load_scenario(args.scenario, as_of)
    else:
        scenario = _live_scenario(args, as_of)
    catalogue, rules = load_catalogue(), load_rules()
    result = evaluate(scenario, pack, catalogue, rules)
    if other is None:
        sys.stdout.write(render(result, args.format))
    else:
        sys.stdout.write(render_compare(result, evaluate(scenario, other, catalogue, rules), args.format))
    return 0 if result.compliant else 1


def _live_scenario(args: argparse.Namespace, as_of: date | None) -> Scenario:
    at = history.parse_instant(args.at) if args.at is not None else None
    with store_from_args(args) as store:
        if at is None:
            now = datetime.now(UTC)
            return parse_scenario(store.inventory(now), "live inventory", as_of or now.date())
        return parse_scenario(store.inventory_at(at), f"inventory at {history.iso(at)}", as_of or at.date())
