"""`gpucensus-agent classify`: would a chip with these figures be controlled under ECCN 3A090?"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import parse_decimal
from gpucensus.common.errors import ConfigError
from gpucensus.common.inventory import hypothetical


def run(args: argparse.Namespace) -> int:
    if args.tpp < 0:
        raise ConfigError(f"--tpp must be a non-negative integer, got {args.tpp}")
    die_area = parse_decimal(args.die_area, "--die-area") if args.die_area is not None else None
    rules = load_rules()
    result = hypothetical(args.tpp, die_area, not args.not_datacenter, rules)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    density = "n/a (no die area)" if result["performance_density"] is None else f"{result['performance_density']:.3f}"
    note2 = f"no (Note 2 applies below TPP {rules.note2_tpp_below})"
    rows = [
        ("TPP", f"{result['tpp']:,}"),
        ("die area (mm²)", "n/a" if die_area is None else args.die_area),
        ("performance density", density),
        ("data centre part", "yes" if result["datacenter"] else note2),
        ("ECCN", result["eccn"]),
        ("H100-equivalents", f"{result['h100e']:.3f}"),
    ]
    if result["review"]:
        rows.append(("review", result["review"]))
    for label, value in rows:
        print(f"{label:<22} {value}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="classify a hypothetical chip (ECCN 3A090, performance density, H100e)",
        description="Classify a chip from its TPP and die area under ECCN 3A090 (thresholds from the "
        "packaged data file common/data/eccn_3a090.toml).",
    )
    parser.add_argument("--tpp", type=int, required=True, help="total processing performance (integer)")
    parser.add_argument("--die-area", default=None, help="applicable die area in mm² (decimal)")
    parser.add_argument(
        "--not-datacenter", action="store_true", help="the part is not designed or marketed for data centres"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)
