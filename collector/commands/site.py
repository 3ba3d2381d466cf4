"""`gpucensus-collector site add|list`: physical sites (a country, an owning entity) that nodes enroll into."""

from __future__ import annotations

import argparse

from collector import registry
from collector.commands.common import command_group, emit, store_action, store_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "site", "manage sites (where GPUs physically are)")
    add = store_action(group, "add", "add a site", run_add)
    add.add_argument("id", help="site id, e.g. fra1")
    add.add_argument("--country", required=True, metavar="CC", help="ISO 3166-1 alpha-2 country, e.g. DE")
    add.add_argument("--entity", required=True, help="the entity that owns the site")
    store_action(group, "list", "list sites", run_list, formatted=True)


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
