"""`gpucensus-collector entity add|list|show`: companies that own sites (headquarters, VEU authorization)."""

from __future__ import annotations

import argparse

from collector import registry
from collector.commands.common import add_format_argument, add_store_arguments, emit, store_from_args
from collector.store.base import RecordNotFoundError

HEADERS = ("id", "headquarters", "authorization")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("entity", help="manage entities (companies that own sites)")
    sub = parser.add_subparsers(dest="entity_command", required=True, metavar="ACTION")

    add = sub.add_parser("add", help="add an entity")
    add.add_argument("id", help="entity id, e.g. acme")
    add.add_argument("--headquarters", required=True, metavar="CC", help="ISO 3166-1 alpha-2 country, e.g. US")
    add.add_argument("--authorization", default="none", choices=registry.AUTHORIZATIONS,
                     help="verified end-user authorization (default: none)")  # fmt: skip
    add_store_arguments(add)
    add.set_defaults(func=run_add)

    lst = sub.add_parser("list", help="list entities")
    add_store_arguments(lst)
    add_format_argument(lst)
    lst.set_defaults(func=run_list)

    show = sub.add_parser("show", help="show one entity and its sites")
    show.add_argument("id")
    add_store_arguments(show)
    add_format_argument(show)
    show.set_defaults(func=run_show)


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
