"""`gpucensus-collector policy list|show NAME`: the shipped policy packs, and what one says."""

from __future__ import annotations

import argparse
import json
import sys

from gpucensus.collector.policy.describe import pack_dict, pack_lines
from gpucensus.collector.policy.pack import builtin_names, load_pack, pack_text
from gpucensus.collector.policy.packs import DEFAULT_PACK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "policy",
        help="list the shipped policy packs or show one",
        description="Policy packs are versioned TOML files: tiers, limits and their sources. `list` shows the "
        "shipped packs; `show NAME|FILE` validates a pack and prints it.",
    )
    sub = parser.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    lister = sub.add_parser("list", help="the shipped packs")
    lister.add_argument("--format", choices=("table", "json"), default="table")
    lister.set_defaults(func=handle_list)
    show = sub.add_parser("show", help="validate a pack and print it")
    show.add_argument("name", metavar="NAME|FILE")
    show.add_argument("--format", choices=("table", "json", "toml"), default="table",
                      help="toml prints the pack file itself, with its source comments")  # fmt: skip
    show.set_defaults(func=handle_show)


def handle_list(args: argparse.Namespace) -> int:
    packs = [load_pack(name) for name in builtin_names()]
    if args.format == "json":
        print(json.dumps([p.summary() for p in packs], indent=2, ensure_ascii=False))
        return 0
    width, status_width = max(len(p.name) for p in packs), max(len(p.status) for p in packs)
    for p in packs:
        default = " (default)" if p.name == DEFAULT_PACK else ""
        print(f"{p.name:<{width}}  {p.status:<{status_width}}  {p.title}{default}")
    return 0


def handle_show(args: argparse.Namespace) -> int:
    pack = load_pack(args.name)  # validates
    if args.format == "toml":
        sys.stdout.write(pack_text(args.name)[0])
    elif args.format == "json":
        print(json.dumps(pack_dict(pack), indent=2, ensure_ascii=False))
    else:
        print("\n".join(pack_lines(pack)))
    return 0
