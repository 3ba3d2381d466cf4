"""`gpucensus-collector site add|list|locate`: physical sites (a country, an owning entity, optionally coordinates)
that nodes enroll into."""

from __future__ import annotations

import argparse

from gpucensus.collector import registry
from gpucensus.collector.commands.common import command_group, emit, now, store_action, store_from_args
from gpucensus.collector.commands.landmark import add_coordinates, coordinates
from gpucensus.collector.location.records import SiteLocation


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "site", "manage sites (where GPUs physically are)")
    add = store_action(group, "add", "add a site", run_add)
    add.add_argument("id", help="site id, e.g. fra1")
    add.add_argument("--country", required=True, metavar="CC", help="ISO 3166-1 alpha-2 country, e.g. DE")
    add.add_argument("--entity", required=True, help="the entity that owns the site")
    add_coordinates(add, required=False)
    store_action(group, "list", "list sites", run_list, formatted=True)
    locate = store_action(group, "locate", "set where a site is (for location evidence)", run_locate)
    locate.add_argument("id", help="site id")
    add_coordinates(locate, required=True)


def run_add(args: argparse.Namespace) -> int:
    site = registry.make_site(args.id, args.country, args.entity)
    where = coordinates(args.lat, args.lon)
    with store_from_args(args) as store:
        store.add_site(site)
        if where:
            store.set_site_location(SiteLocation(site.id, *where), now())
    at = f", at {where[0]}, {where[1]}" if where else ""
    print(f"site {site.id} added (country {site.country}, entity {site.entity}{at})")
    return 0


def run_locate(args: argparse.Namespace) -> int:
    lat, lon = coordinates(args.lat, args.lon)  # type: ignore[misc]
    with store_from_args(args) as store:
        store.set_site_location(SiteLocation(args.id, lat, lon), now())
    print(f"site {args.id} is at {lat}, {lon}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        rows = [(s.id, s.country, s.entity) for s in store.list_sites()]
    emit(args.format, ("id", "country", "entity"), rows)
    return 0
