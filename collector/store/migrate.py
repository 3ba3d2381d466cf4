"""Versioned schema migrations: files `migrations/NNNN_<name>.<dialect>.sql`, applied in order.

The applied versions are rows of `schema_version`; a database whose version is newer than the newest file
shipped here is refused (an older collector must never write into a newer schema).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from gpucensus.collector.errors import StoreError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgres)\.sql$")

SCHEMA_VERSION_DDL = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> tuple[str, ...]:
    """Split a migration file into statements (our files hold no ';' inside literals or comments)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def load_migrations(dialect: str) -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("gpucensus.collector.store.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match and match.group(3) == dialect:
            found.append(Migration(int(match.group(1)), match.group(2), split_statements(entry.read_text())))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StoreError(
                f"{dialect} migrations are not contiguous: expected {expected:04d}, found {migration.version:04d}"
            )
    return found


def latest_version(dialect: str) -> int:
    migrations = load_migrations(dialect)
    return migrations[-1].version if migrations else 0


def check_not_newer(found: int, dialect: str, where: str) -> None:
    supported = latest_version(dialect)
    if found > supported:
        raise StoreError(
            f"the {dialect} database {where} has schema version {found}, newer than version {supported} "
            "that this gpucensus-collector supports; refusing to use it",
            hint="upgrade gpucensus-collector to the version that created this database (or point it at "
            "another database)",
        )
