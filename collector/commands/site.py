"""`gpucensus-collector site add|list`: physical sites (a country, an owning entity) that nodes enroll into."""

from __future__ import annotations

import argparse

from collector import registry
from collector.commands.common import add_format_argument, add_store_arguments, emit, store_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("site", help="manage sites (where GPUs physically are)")
    sub = parser.add_subparsers(dest="site_command", required=True, metavar="ACTION")

    add = sub.add_parser("add", help="add a site")
    add.add_argument("id", help="site id, e.g. fra1")
    add.add_argument("--country", required=True, metavar="CC", help="ISO 3166-1 alpha-2 country, e.g. DE")
    add.add_argument("--entity", required=True, help="the entity that owns the site")
    add_store_arguments(add)
    add.set_defaults(func=run_add)

    lst = sub.add_parser("list", help="list sites")
    add_store_arguments(lst)
    add_format_argument(lst)
    lst.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    site = registry.make_site(args.id, args.country, args.entity)
    with store_from_args(args) as store:
        store.add_site(site)
    print(f"site {site.id} added (country {site.country}, entity {site.entity})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        rows = [(s.id, s.country, s.entity) for s in store.list_sites()]
    emit(args.format, ("id", "country", "entity"), rows)
    return 0
