"""`gpucensus-collector evaluate`: evaluate a scenario file under a policy pack (optionally compared with another).

Exit 0 compliant, 1 violations, 2 bad input (a message naming the field, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from collector.errors import ConfigError
from collector.policy import evaluate, load_pack, load_scenario
from collector.policy.compare import render_compare
from collector.policy.fields import iso_date
from collector.policy.render import FORMATS, render
from common.accounting import load_rules
from common.catalogue import load_catalogue


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
    parser.add_argument("--scenario", required=True, metavar="FILE", help="the scenario file")
    add_policy_arguments(parser, policy_required=True)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    pack = load_pack(args.policy)
    other = load_pack(args.compare) if args.compare else None
    scenario = load_scenario(args.scenario, parse_as_of(args.as_of))
    catalogue, rules = load_catalogue(), load_rules()
    result = evaluate(scenario, pack, catalogue, rules)
    if other is None:
        sys.stdout.write(render(result, args.format))
    else:
        sys.stdout.write(render_compare(result, evaluate(scenario, other, catalogue, rules), args.format))
    return 0 if result.compliant else 1
