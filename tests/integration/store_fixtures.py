"""A fresh store of each kind, for any integration test: `make_store`, parametrized over `store_kind`.

Use in a test module (as a plugin: no import, so ruff sees no unused/redefined names):

    pytest_plugins = ["tests.integration.store_fixtures"]

    def test_something(make_store):
        store = make_store()          # fresh, migrated; SQLite file in tmp_path or a new PostgreSQL schema
        other = make_store()          # a second handle on the SAME database (a second collector)
        make_store.kind               # "sqlite" | "postgres"
        make_store.options            # open_store options, e.g. {"data_dir": ...} or {"dsn": ..., "schema": ...}
        make_store.toml()             # a "[store]" section for a collector config file (subprocess tests)

Every test gets its own database (PostgreSQL: schema `gpucensus_test_<random>`, dropped at teardown). The
PostgreSQL run uses GPUCENSUS_TEST_PG_DSN or the server on 127.0.0.1:5432, database `test`; when it is not
reachable the postgres variant is skipped with a message naming the DSN.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import Store
from psycopg import sql

PG_DSN = os.environ.get("GPUCENSUS_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
STORE_KINDS = ("sqlite", "postgres")


@cache
def skip_without_postgres() -> None:
    """Skip (with the reason) where no PostgreSQL server is reachable; in CI (CI=true) the server is part of the
    machine, so an unreachable one fails the test instead of hiding the PostgreSQL runs."""
    reason = postgres_unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run in CI)")
    pytest.skip(reason)


def postgres_unreachable_reason(dsn: str = PG_DSN) -> str | None:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except psycopg.Error as err:
        return f"PostgreSQL not reachable at {dsn!r}: {str(err).strip()}"


class StoreFactory:
    """Opens stores on one fresh database; closes them (and drops the PostgreSQL schema) at teardown."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.options: dict[str, Any]
        if kind == "sqlite":
            self.options = {"data_dir": str(tmp_path / "collector-data")}
        else:
            self.options = {"dsn": PG_DSN, "schema": f"gpucensus_test_{secrets.token_hex(6)}"}
        self.data_dir = tmp_path / "collector-data"  # the log key and checkpoint files go there (PostgreSQL too)
        self._opened: list[Store] = []

    def __call__(self, **extra: Any) -> Store:
        store = open_store(self.kind, **{**self.options, **extra})
        self._opened.append(store)
        return store

    def toml(self) -> str:
        lines = ["[store]", f"kind = {json.dumps(self.kind)}"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in self.options.items()]
        if self.kind != "sqlite":
            lines.append(f"data_dir = {json.dumps(str(self.data_dir))}")
        return "\n".join(lines) + "\n"

    def cleanup(self) -> None:
        for store in self._opened:
            store.close()
        if self.kind == "postgres":
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.options["schema"])))


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        skip_without_postgres()
    return request.param


@pytest.fixture
def make_store(store_kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(store_kind, tmp_path)
    yield factory
    factory.cleanup()
