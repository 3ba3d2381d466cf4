"""Collector stores: an explicit registry of the built-in implementations of `collector.store.base.Store`.

The registry name is the module name and the `[store] kind` config value. Each implementation is imported when a
store of its kind is opened, not with this package: a command on a SQLite store never loads the PostgreSQL driver.
"""

from __future__ import annotations

import importlib
from typing import Any

from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store.base import Store

# kind -> the class implementing it, as "module:attribute" (imported by `store_class`)
STORES: dict[str, str] = {
    "sqlite": "gpucensus.collector.store.sqlite:SqliteStore",
    "postgres": "gpucensus.collector.store.postgres:PostgresStore",
}


def store_class(kind: str) -> type[Any]:
    """The class of the store `kind` (importing its module and driver now); ConfigError for an unknown kind."""
    try:
        module, _, name = STORES[kind].partition(":")
    except KeyError:
        raise ConfigError(
            f"unknown store kind {kind!r}", hint=f"[store] kind must be one of: {', '.join(sorted(STORES))}"
        ) from None
    return getattr(importlib.import_module(module), name)


def open_store(kind: str, *, migrate: bool = True, **options: Any) -> Store:
    """Open the store `kind` with its options (`path`/`data_dir` or `dsn`/`schema`) and migrate its schema.

    ConfigError for an unknown kind or option; StoreError when the database cannot be used."""
    cls = store_class(kind)
    try:
        store = cls(**options)
    except TypeError as err:
        raise ConfigError(f"bad options for the {kind} store: {err}") from err
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["STORES", "Store", "open_store", "store_class"]
