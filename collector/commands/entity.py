"""`gpucensus-collector entity add|list|show`: companies that own sites (headquarters, VEU authorization)."""

from __future__ import annotations

import argparse

from gpucensus.collector import registry
from gpucensus.collector.commands.common import command_group, emit, store_action, store_from_args
from gpucensus.collector.store.base import RecordNotFoundError

HEADERS = ("id", "headquarters", "authorization")


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "entity", "manage entities (companies that own sites)")
    add = store_action(group, "add", "add an entity", run_add)
    add.add_argument("id", help="entity id, e.g. acme")
    add.add_argument("--headquarters", required=True, metavar="CC", help="ISO 3166-1 alpha-2 country, e.g. US")
    add.add_argument("--authorization", default="none", choices=registry.AUTHORIZATIONS,
                     help="verified end-user authorization (default: none)")  # fmt: skip
    store_action(group, "list", "list entities", run_list, formatted=True)
    store_action(group, "show", "show one entity and its sites", run_show, formatted=True).add_argument("id")


def run_add(args: argparse.Namespace) -> int:
    entity = registry.make_entity(args.id, args.headquarters, args.authorization)
    with store_from_args(args) as store:
        store.add_entity(entity)
    print(f"entity {entity.id} added (headquarters {entity.headquarters}, authorization {entity.authorization})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        rows = [(e.id, e.headquarters, e.authorization) for e in store.list_entities()]
    emit(args.format, HEADERS, rows)
    return 0


def run_show(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        entity = store.get_entity(args.id)
        if entity is None:
            raise RecordNotFoundError(f"entity {args.id!r} does not exist", hint="see: gpucensus-collector entity list")
        sites = [s for s in store.list_sites() if s.entity == entity.id]
    if args.format == "json":
        emit("json", (*HEADERS, "sites"),
             [(entity.id, entity.headquarters, entity.authorization, [s.id for s in sites])])  # fmt: skip
    else:
        emit("table", HEADERS, [(entity.id, entity.headquarters, entity.authorization)])
        print()
        emit("table", ("site", "country"), [(s.id, s.country) for s in sites])
    return 0
