"""Collector stores: an explicit registry of the built-in implementations of `collector.store.base.Store`.

The registry name is the module name and the `[store] kind` config value.
"""

from __future__ import annotations

from typing import Any

from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store.base import Store
from gpucensus.collector.store.postgres import PostgresStore
from gpucensus.collector.store.sqlite import SqliteStore

STORES: dict[str, type[Any]] = {"sqlite": SqliteStore, "postgres": PostgresStore}


def open_store(kind: str, *, migrate: bool = True, **options: Any) -> Store:
    """Open the store `kind` with its options (`path`/`data_dir` or `dsn`/`schema`) and migrate its schema.

    ConfigError for an unknown kind or option; StoreError when the database cannot be used."""
    try:
        cls = STORES[kind]
    except KeyError:
        raise ConfigError(
            f"unknown store kind {kind!r}", hint=f"[store] kind must be one of: {', '.join(sorted(STORES))}"
        ) from None
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


__all__ = ["STORES", "Store", "open_store"]
