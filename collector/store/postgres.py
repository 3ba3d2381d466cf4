"""PostgreSQL store (psycopg 3): several collectors may share one database.

Correctness under concurrency comes from the database, not from this process: `UNIQUE (keyid, sequence)` with
`INSERT … ON CONFLICT DO NOTHING RETURNING` (the loser gets ConflictError), single-use tokens by
`UPDATE … WHERE used_at IS NULL AND expires_at > now RETURNING`, upserts for per-node and per-GPU state taken
in one lock order, and an advisory lock around migrations. Each thread borrows its own connection from a small
pool; a connection that broke is dropped and the error becomes StoreError (the agent retries UNAVAILABLE).

A read (`_tx(False)`) runs its statements in autocommit, without BEGIN and COMMIT: under PostgreSQL's default
READ COMMITTED every statement takes its own snapshot even inside a transaction, so a read-only transaction adds
two round trips and no consistency (the ingest path makes about eight reads per envelope). Writes are
transactions as before.
"""

from __future__ import annotations

import queue
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import psycopg
from gpucensus.collector.errors import StoreError
from gpucensus.collector.store.sqlstore import SqlStore
from psycopg import sql

_MIGRATION_LOCK_KEY = 7_206_452_118_733_370_001  # any fixed bigint; names "gpucensus migrations"


class _Cursor:
    """A psycopg cursor that takes the `?` placeholders the shared SQL is written with."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def execute(self, query: str, params: tuple[Any, ...] | None = None) -> psycopg.Cursor[Any]:
        return self._cur.execute(query.replace("?", "%s").encode(), params)  # type: ignore[call-overload]

    def executemany(self, query: str, params_seq: list[tuple[Any, ...]]) -> None:
        self._cur.executemany(query.replace("?", "%s").encode(), params_seq)  # pipelined: one round trip

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class PostgresStore(SqlStore):
    kind = "postgres"
    dialect = "postgres"
    _for_update = " FOR UPDATE"
    _log_index_at_insert = "NULL"

    def __init__(self, *, dsn: str, schema: str | None = None, connect_timeout: int = 5) -> None:
        if not dsn:
            raise StoreError("the postgres store needs a DSN", hint="set [store] dsn in the collector config")
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.where = f"at {_redact(dsn)}" + (f" (schema {schema})" if schema else "")
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.check_version()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout)
            conn.execute("SET TIME ZONE 'UTC'")
            if self.schema:
                self._ensure_schema(conn)
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        except psycopg.Error as err:
            raise StoreError(f"cannot connect to PostgreSQL {self.where}: {err}".strip(),
                             hint="check [store] dsn and that the server is up") from err  # fmt: skip
        with self._lock:
            self._all.append(conn)
        return conn

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create the configured schema if missing (two collectors may race: the loser's error is ignored)."""
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema):
            pass

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def _borrow(self) -> psycopg.Connection[Any]:
        """An idle connection, or a new one. An idle connection the server has written to was almost surely
        closed by it (restart, pg_terminate_backend, idle timeout): dropped, so no request fails for it."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self._connect()
            if not _has_input(conn):
                return conn
            self._discard(conn)

    @contextmanager
    def _tx(self, write: bool) -> Iterator[Any]:
        if self._closed:
            raise StoreError(f"the PostgreSQL store {self.where} is closed")
        conn = self._borrow()
        try:
            with conn.transaction() if write else nullcontext(), conn.cursor() as cur:
                yield _Cursor(cur)
        except psycopg.OperationalError as err:
            self._discard(conn)
            raise StoreError(f"PostgreSQL error {self.where}: {err}".strip()) from err
        except BaseException:
            if conn.broken or conn.closed:
                self._discard(conn)
            else:
                self._idle.put(conn)
            raise
        else:
            self._idle.put(conn)

    def _has_table(self, cur: Any, name: str) -> bool:
        row = cur.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?",
            (name,),
        ).fetchone()
        return row is not None

    def _migration_lock(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))

    def _t(self, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware UTC times")
        return value

    def _dt(self, value: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _has_input(conn: psycopg.Connection[Any]) -> bool:
    """True if the server sent something on an idle connection (or closed it)."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):  # closed socket or connection
        return True


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
