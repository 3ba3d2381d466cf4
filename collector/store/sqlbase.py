"""The SQL both stores share, part 1: dialect hooks, schema lifecycle and the registry.

Queries are written with `?` placeholders (the PostgreSQL store turns them into `%s`) and avoid literal `%`.
A dialect subclass provides `_tx(write)` (a transaction yielding a cursor), `_t` / `_dt` (datetime to and from
the database), `_has_table` and `_migration_lock`. Every public method is one transaction. Part 2 (findings and
evidence) is `collector.store.sqlfindings`, 2b (binding node ids to keys and sites) `sqlnodes`; part 3
(attestations, per-GPU state, nodes, queries) `sqlstore`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from gpucensus.collector.store import migrate as migrations
from gpucensus.collector.store.base import (
    EnrollmentToken,
    Entity,
    NodeBoundError,
    NodeKey,
    RecordExistsError,
    RecordNotFoundError,
    Site,
)

KEY_COLUMNS = "keyid, public_key_pem, node_id, site, enrolled_at, revoked_at"
USABLE_TOKEN = "uses_left > 0 AND revoked_at IS NULL AND expires_at > ?"  # the parameter: now


def where_equal(sql: str, column: str, value: Any) -> tuple[str, tuple[Any, ...]]:
    """`sql` filtered on `column = value`, or unfiltered when value is None; with its parameters."""
    return (sql, ()) if value is None else (f"{sql} WHERE {column} = ?", (value,))


class SqlBase:
    kind = ""
    dialect = ""
    where = ""  # the database, for messages

    # --- dialect hooks ----------------------------------------------------------------------------------
    def _tx(self, write: bool) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _t(self, value: datetime | None) -> Any:
        raise NotImplementedError

    def _dt(self, value: Any) -> datetime | None:
        raise NotImplementedError

    def _migration_lock(self, cur: Any) -> None:
        """Serialize concurrent migrations (several collectors starting at once)."""

    def close(self) -> None:
        raise NotImplementedError

    # --- lifecycle --------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._tx(False) as cur:
            return self._read_version(cur)

    def _read_version(self, cur: Any) -> int:
        if not self._has_table(cur, "schema_version"):
            return 0
        row = cur.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _has_table(self, cur: Any, name: str) -> bool:
        raise NotImplementedError

    def check_version(self) -> int:
        found = self.schema_version()
        migrations.check_not_newer(found, self.dialect, self.where)
        return found

    def migrate(self) -> int:
        with self._tx(True) as cur:
            self._migration_lock(cur)
            cur.execute(migrations.SCHEMA_VERSION_DDL)
            current = self._read_version(cur)
            migrations.check_not_newer(current, self.dialect, self.where)
            for migration in migrations.load_migrations(self.dialect):
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (migration.version, datetime.now(UTC).isoformat()),
                )
                current = migration.version
            return current

    # --- registry ---------------------------------------------------------------------------------------
    def _bump_registry(self, cur: Any) -> None:
        """Every registry write that can change a policy evaluation calls this in its transaction (see
        `Store.registry_version`): collectors sharing the database notice the write and re-evaluate."""
        cur.execute("UPDATE registry_version SET version = version + 1 WHERE id = 1")

    def add_entity(self, entity: Entity) -> None:
        with self._tx(True) as cur:
            cur.execute(
                "INSERT INTO entities (id, headquarters, auth) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (entity.id, entity.headquarters, entity.authorization),
            )
            if cur.rowcount != 1:
                raise RecordExistsError(f"entity {entity.id!r} already exists")
            self._bump_registry(cur)

    def get_entity(self, entity_id: str) -> Entity | None:
        with self._tx(False) as cur:
            row = cur.execute("SELECT id, headquarters, auth FROM entities WHERE id = ?", (entity_id,)).fetchone()
        return Entity(*row) if row else None

    def list_entities(self) -> list[Entity]:
        with self._tx(False) as cur:
            rows = cur.execute("SELECT id, headquarters, auth FROM entities ORDER BY id").fetchall()
        return [Entity(*row) for row in rows]

    def add_site(self, site: Site) -> None:
        with self._tx(True) as cur:
            if not cur.execute("SELECT 1 FROM entities WHERE id = ?", (site.entity,)).fetchone():
                raise RecordNotFoundError(
                    f"entity {site.entity!r} does not exist", hint="add it first: gpucensus-collector entity add"
                )
            cur.execute(
                "INSERT INTO sites (id, country, entity) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (site.id, site.country, site.entity),
            )
            if cur.rowcount != 1:
                raise RecordExistsError(f"site {site.id!r} already exists")
            self._bump_registry(cur)

    def get_site(self, site_id: str) -> Site | None:
        with self._tx(False) as cur:
            row = cur.execute("SELECT id, country, entity FROM sites WHERE id = ?", (site_id,)).fetchone()
        return Site(*row) if row else None

    def list_sites(self) -> list[Site]:
        with self._tx(False) as cur:
            rows = cur.execute("SELECT id, country, entity FROM sites ORDER BY id").fetchall()
        return [Site(*row) for row in rows]

    def add_token(self, token: EnrollmentToken) -> None:
        with self._tx(True) as cur:
            if not cur.execute("SELECT 1 FROM sites WHERE id = ?", (token.site,)).fetchone():
                raise RecordNotFoundError(
                    f"site {token.site!r} does not exist", hint="add it first: gpucensus-collector site add"
                )
            if token.node_id:
                row = cur.execute("SELECT site FROM nodes WHERE node_id = ?", (token.node_id,)).fetchone()
                if row and row[0] != token.site:
                    raise NodeBoundError(
                        f"node {token.node_id!r} is at site {row[0]!r}, not {token.site!r}",
                        hint=f"create the token for site {row[0]}, or move the node first: "
                        f"gpucensus-collector node move {token.node_id} --site {token.site}",
                    )
            if token.uses < 1 or (token.node_id and token.uses != 1):
                raise ValueError(f"a token enrolls at least one node, a token for one node id exactly one: {token}")
            cur.execute(
                "INSERT INTO enrollment_tokens (token_hash, site, created_at, expires_at, used_at, node_id, "
                "uses_total, uses_left, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token.token_hash,
                    token.site,
                    self._t(token.created_at),
                    self._t(token.expires_at),
                    self._t(token.used_at),
                    token.node_id,
                    token.uses,
                    token.remaining,
                    self._t(token.revoked_at),
                ),
            )

    def consume_token(self, token_hash: str, now: datetime) -> str | None:
        with self._tx(True) as cur:
            return self._consume(cur, token_hash, now)

    def _consume(self, cur: Any, token_hash: str, now: datetime, node_id: str = "", keyid: str = "") -> str | None:
        """Count one use down (one UPDATE: the row lock makes concurrent uses of the last one exclusive) and
        record it; the token's site, or None if it is unknown, used up, revoked or expired."""
        row = cur.execute(
            "UPDATE enrollment_tokens SET uses_left = uses_left - 1, used_at = ? WHERE token_hash = ? AND "
            f"{USABLE_TOKEN} RETURNING site",
            (self._t(now), token_hash, self._t(now)),
        ).fetchone()
        if row is None:
            return None
        cur.execute(
            "INSERT INTO token_uses (token_hash, node_id, keyid, used_at) VALUES (?, ?, ?, ?)",
            (token_hash, node_id, keyid, self._t(now)),
        )
        return row[0]

    def get_key(self, keyid: str) -> NodeKey | None:
        with self._tx(False) as cur:
            row = cur.execute(f"SELECT {KEY_COLUMNS} FROM node_keys WHERE keyid = ?", (keyid,)).fetchone()
        return self._key(row) if row else None

    def list_keys(self, site: str | None = None) -> list[NodeKey]:
        sql = f"SELECT {KEY_COLUMNS} FROM node_keys"
        sql, params = where_equal(sql, "site", site)
        with self._tx(False) as cur:
            rows = cur.execute(sql + " ORDER BY node_id, enrolled_at", params).fetchall()
        return [self._key(row) for row in rows]

    def _key(self, row: Any) -> NodeKey:
        return NodeKey(row[0], row[1], row[2], row[3], self._dt(row[4]), self._dt(row[5]))
