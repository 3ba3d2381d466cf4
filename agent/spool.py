"""The durable spool: every signed envelope is written here (SQLite WAL, synchronous=FULL) before it is sent.

An envelope leaves the `pending` state only on an ack carrying a log index (`delivered`) or on a final refusal
by the collector (`rejected`, kept for the operator, never deleted). A row whose bytes no longer match the
digest written with them is `quarantined` with the reason, loudly, and the rest of the spool keeps draining.
When the undelivered bytes reach `max_bytes`, `check_room()` logs an error and counts it in a metric; the
agent then creates no new envelope until there is room (a snapshot is never signed and then dropped).

The spool remembers the last delivered sequence and digest of each key even when `keep_delivered` is 0, and
carries a random id that the chain state records, so a spool that was emptied, removed or replaced is noticed.
A spool that fails SQLite's `quick_check` is a `StateError` before anything is written to it. Opened with
`read_only=True` (`spool list`), the file is never written. A new spool file is created 0600 in a 0700 directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gpucensus.common.durable import create_sqlite_file
from gpucensus.common.errors import StateError
from prometheus_client import CollectorRegistry, Counter, Gauge

SCHEMA_VERSION = 2
PENDING, DELIVERED, REJECTED, QUARANTINED = "pending", "delivered", "rejected", "quarantined"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    keyid TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    log_index INTEGER,
    error TEXT NOT NULL DEFAULT '',
    UNIQUE (keyid, sequence)
);
CREATE INDEX IF NOT EXISTS envelopes_state ON envelopes (state, sequence, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS last_delivered (keyid TEXT PRIMARY KEY, sequence INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""
_SEED_LAST_DELIVERED = """
INSERT INTO last_delivered (keyid, sequence, sha256)
SELECT keyid, sequence, sha256 FROM envelopes AS e WHERE state = 'delivered'
AND sequence = (SELECT MAX(sequence) FROM envelopes WHERE keyid = e.keyid AND state = 'delivered')
ON CONFLICT (keyid) DO NOTHING
"""
_TABLES = {"envelopes", "sqlite_sequence", "meta", "last_delivered"}

log = logging.getLogger("gpucensus.agent.spool")


@dataclass(frozen=True)
class SpoolEntry:
    keyid: str
    sequence: int
    envelope: bytes


@dataclass(frozen=True)
class SpoolRow:
    """What the operator sees of one spool row (everything but the envelope bytes)."""

    keyid: str
    sequence: int
    state: str
    log_index: int | None
    size_bytes: int
    error: str


class SpoolMetrics:
    """The spool's Prometheus metrics, registered in the registry the caller passes in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "gpucensus_agent_spool_"
        self.pending = Gauge(p + "pending_envelopes", "Envelopes waiting for an ack", registry=registry)
        self.rejected = Gauge(p + "rejected_envelopes", "Envelopes refused by the collector", registry=registry)
        self.quarantined = Gauge(p + "quarantined_envelopes", "Corrupted spool rows set aside", registry=registry)
        self.undelivered_bytes = Gauge(p + "undelivered_bytes", "Bytes not yet delivered", registry=registry)
        self.max_bytes = Gauge(p + "max_bytes", "Configured spool size limit", registry=registry)
        self.full = Counter(p + "full", "Rounds refused because the spool was full", registry=registry)
        self.delivered = Counter(
            "gpucensus_agent_envelopes_delivered", "Envelopes acked with a log index", registry=registry
        )


class Spool:
    """A durable queue of signed envelopes keyed by (keyid, sequence)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int,
        registry: CollectorRegistry | None = None,
        keep_delivered: int = 100,
        *,
        must_exist: bool = False,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        if (must_exist or read_only) and not self.path.is_file():
            raise StateError(f"no spool at {self.path}", hint="check spool.path / node.state_dir in the config")
        if read_only and self.path.stat().st_size == 0:
            raise StateError(
                f"spool {self.path} is empty (0 bytes): it holds no envelope, and the agent refuses to start on it "
                "if its chain state shows that envelopes were signed",
                hint="restore the spool from a backup if it was emptied by mistake",
            )
        self.max_bytes = max_bytes
        self.keep_delivered = keep_delivered
        self.read_only = read_only
        self.metrics = SpoolMetrics(registry if registry is not None else CollectorRegistry())
        self.metrics.max_bytes.set(max_bytes)
        self._db = self._open_read_only() if read_only else self._open()
        self.spool_id = self._spool_id()
        self._refresh_metrics()

    def _open(self) -> sqlite3.Connection:
        db = None
        try:
            create_sqlite_file(self.path)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            version = self._check_file(db)  # before anything is written to it
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            if version < SCHEMA_VERSION or not self._has_id(db):
                self._initialize(db, version)
        except (sqlite3.DatabaseError, OSError, StateError) as err:
            raise self._open_failed(db, err)  # noqa: B904 (the cause is kept as __context__; a StateError is re-raised)
        if mode.lower() != "wal":
            log.warning("spool %s: journal_mode is %s, not WAL (filesystem without WAL support?)", self.path, mode)
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that never writes to the file (SQLite may add empty -wal/-shm files next to it)."""
        db = None
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30)
            self._check_file(db)
        except (sqlite3.DatabaseError, OSError, StateError) as err:
            raise self._open_failed(db, err)  # noqa: B904 (the cause is kept as __context__; a StateError is re-raised)
        return db

    def _open_failed(self, db: sqlite3.Connection | None, err: Exception) -> StateError:
        """Close what was opened; the StateError to raise for `err` (a StateError stays as it is)."""
        if db is not None:
            db.close()
        if isinstance(err, StateError):
            return err
        return StateError(f"cannot open spool {self.path}: {err}", hint=_open_hint(err))

    def _check_file(self, db: sqlite3.Connection) -> int:
        """Refuse a damaged file, another database, or a newer schema; return the schema version."""
        try:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        except sqlite3.OperationalError:
            raise  # locked, unreadable: not damage (reported by the caller with its own hint)
        except sqlite3.DatabaseError as err:  # "file is not a database", "database disk image is malformed"
            problems = [str(err)]
        if problems != ["ok"]:
            raise StateError(
                f"spool {self.path} is damaged (SQLite quick_check: {'; '.join(problems)[:300]}); it was left as it is",
                hint="move it aside and keep it (it may hold undelivered envelopes), or restore it from a "
                "backup; check it with `sqlite3 FILE 'PRAGMA integrity_check'`",
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"spool {self.path} was written by a newer agent (schema {version} > {SCHEMA_VERSION})",
                hint="run the newer agent version, or move the spool aside after it has drained",
            )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables - _TABLES:
            listed = ", ".join(sorted(tables))
            raise StateError(
                f"{self.path} is an SQLite database but not a gpucensus spool (tables: {listed})",
                hint="point spool.path at the agent's own spool file; this one was left untouched",
            )
        return int(version)

    @staticmethod
    def _has_id(db: sqlite3.Connection) -> bool:
        return bool(db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()) and (
            db.execute("SELECT 1 FROM meta WHERE name = 'spool_id'").fetchone() is not None
        )

    def _initialize(self, db: sqlite3.Connection, version: int) -> None:
        """Create or upgrade the schema in one transaction: a new spool (or a schema-1 one) gets its id, and
        the last delivered sequence of each key is seeded from the delivered rows still kept."""
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(_SEED_LAST_DELIVERED)
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('spool_id', ?)", (secrets.token_hex(16),))
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _spool_id(self) -> str:
        if not self._has_id(self._db):  # a schema-1 spool opened read-only
            return ""
        return str(self._db.execute("SELECT value FROM meta WHERE name = 'spool_id'").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    # --- writing -------------------------------------------------------------------------------------------

    def append(self, keyid: str, sequence: int, envelope: bytes) -> None:
        """Store a signed envelope durably (fsync'd on return). The same bytes again are a no-op."""
        digest = hashlib.sha256(envelope).hexdigest()
        try:
            self._db.execute(
                "INSERT INTO envelopes (keyid, sequence, envelope, sha256, size_bytes) VALUES (?, ?, ?, ?, ?)",
                (keyid, sequence, envelope, digest, len(envelope)),
            )
        except sqlite3.IntegrityError:
            row = self._db.execute(
                "SELECT sha256 FROM envelopes WHERE keyid = ? AND sequence = ?", (keyid, sequence)
            ).fetchone()
            if row is None or row[0] != digest:
                raise StateError(
                    f"spool already holds a different envelope for key {keyid[:16]} sequence {sequence}",
                    hint="the chain state was reset or restored from a backup; do not reuse sequence numbers",
                ) from None
        self._refresh_metrics()

    def mark_delivered(self, keyid: str, sequence: int, log_index: int) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = self._db.execute(
                "UPDATE envelopes SET state = ?, log_index = ?, error = '' WHERE keyid = ? AND sequence = ? "
                "AND state = ?",
                (DELIVERED, log_index, keyid, sequence, PENDING),
            )
            if cur.rowcount:
                self._db.execute(
                    "INSERT INTO last_delivered (keyid, sequence, sha256) "
                    "SELECT keyid, sequence, sha256 FROM envelopes WHERE keyid = ? AND sequence = ? "
                    "ON CONFLICT (keyid) DO UPDATE SET sequence = excluded.sequence, sha256 = excluded.sha256 "
                    "WHERE excluded.sequence > last_delivered.sequence",
                    (keyid, sequence),
                )
                self._prune()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if cur.rowcount:
            self.metrics.delivered.inc()
            self._refresh_metrics()

    def mark_rejected(self, keyid: str, sequence: int, reason: str) -> None:
        """A final refusal by the collector: the envelope stays in the spool, flagged, never deleted."""
        self._db.execute(
            "UPDATE envelopes SET state = ?, error = ? WHERE keyid = ? AND sequence = ? AND state = ?",
            (REJECTED, reason, keyid, sequence, PENDING),
        )
        self._refresh_metrics()

    def _quarantine(self, row_id: int, reason: str) -> None:
        self._db.execute("UPDATE envelopes SET state = ?, error = ? WHERE id = ?", (QUARANTINED, reason, row_id))

    def _prune(self) -> None:
        self._db.execute(
            "DELETE FROM envelopes WHERE state = ? AND id NOT IN "
            "(SELECT id FROM envelopes WHERE state = ? ORDER BY id DESC LIMIT ?)",
            (DELIVERED, DELIVERED, self.keep_delivered),
        )

    # --- reading -------------------------------------------------------------------------------------------

    def pending(self, limit: int = -1) -> list[SpoolEntry]:
        """The first `limit` (all if -1) pending envelopes in sequence order; corrupted rows are quarantined
        (logged), not returned, so fewer than `limit` may come back while more are pending."""
        rows = self._db.execute(
            "SELECT id, keyid, sequence, envelope, sha256 FROM envelopes WHERE state = ? ORDER BY sequence, id LIMIT ?",
            (PENDING, limit),
        ).fetchall()
        out: list[SpoolEntry] = []
        quarantined = False
        for row_id, keyid, sequence, envelope, digest in rows:
            reason = _check_row(keyid, sequence, envelope, digest)
            if reason:
                log.error(
                    "spool %s: row %s (key %s sequence %s) is corrupted and was quarantined: %s",
                    self.path, row_id, str(keyid)[:16], sequence, reason,
                )  # fmt: skip
                self._quarantine(row_id, reason)
                quarantined = True
                continue
            out.append(SpoolEntry(keyid, sequence, bytes(envelope)))
        if quarantined:
            self._refresh_metrics()
        return out

    def since(self, row_id: int, limit: int) -> list[tuple[int, str, int | None, bytes]]:
        """(row id, state, log index, envelope bytes) of the rows from `row_id` on, in the order they were
        written: the log monitor walks them to check its delivered envelopes are in the log."""
        rows = self._db.execute(
            "SELECT id, state, log_index, envelope FROM envelopes WHERE id >= ? ORDER BY id LIMIT ?", (row_id, limit)
        ).fetchall()
        return [(int(i), state, index, bytes(envelope)) for i, state, index, envelope in rows]

    def counts(self) -> dict[str, int]:
        """Number of rows per state (every state present, zero if none)."""
        counts = dict.fromkeys((PENDING, DELIVERED, REJECTED, QUARANTINED), 0)
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM envelopes GROUP BY state"):
            counts[state] = n
        return counts

    def entries(self, state: str | None = None) -> list[SpoolRow]:
        """Every row in `state` (all rows if None), in sequence order, without the envelope bytes."""
        query = "SELECT keyid, sequence, state, log_index, size_bytes, error FROM envelopes WHERE ? IN (state, '')"
        return [SpoolRow(*row) for row in self._db.execute(query + " ORDER BY sequence, id", (state or "",))]

    def retry_rejected(self, sequence: int | None = None, keyid_prefix: str = "") -> list[SpoolRow]:
        """Put rejected rows back to pending (one sequence, or all if None) so the next drain resends them.

        Deletes nothing. Returns the rows as they were before (empty if none matched).
        """
        rows = [r for r in self.entries(REJECTED) if r.keyid.startswith(keyid_prefix)]
        rows = [r for r in rows if sequence is None or r.sequence == sequence]
        self._db.executemany(
            "UPDATE envelopes SET state = ?, error = '' WHERE keyid = ? AND sequence = ? AND state = ?",
            [(PENDING, r.keyid, r.sequence, REJECTED) for r in rows],
        )
        self._refresh_metrics()
        return rows

    def last_sequence(self, keyid: str) -> int:
        """The highest sequence of `keyid` the spool holds or delivered (0 if none), whether or not its row was
        pruned (`keep_delivered`): the chain state must be past it."""
        row = self._db.execute(
            "SELECT MAX(COALESCE((SELECT MAX(sequence) FROM envelopes WHERE keyid = ?), 0), "
            "COALESCE((SELECT sequence FROM last_delivered WHERE keyid = ?), 0))",
            (keyid, keyid),
        )
        return int(row.fetchone()[0])

    def last_delivered(self, keyid: str) -> tuple[int, str] | None:
        """(sequence, hex SHA-256) of the last envelope of `keyid` the collector acknowledged, kept even when its
        row was pruned; None if none was."""
        row = self._db.execute("SELECT sequence, sha256 FROM last_delivered WHERE keyid = ?", (keyid,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def undelivered_bytes(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM envelopes WHERE state != ?", (DELIVERED,))
        return int(row.fetchone()[0])

    def check_room(self) -> bool:
        """True if a new envelope may be created; otherwise log an error and count it (every call)."""
        used = self.undelivered_bytes()
        if used < self.max_bytes:
            return True
        self.metrics.full.inc()
        log.error(
            "spool %s is full (%d undelivered bytes, limit %d): not creating a new attestation this round; "
            "nothing already spooled is dropped. Check the collector connection, or raise spool.max_bytes",
            self.path, used, self.max_bytes,
        )  # fmt: skip
        return False

    def _refresh_metrics(self) -> None:
        counts = dict.fromkeys((PENDING, DELIVERED, REJECTED, QUARANTINED), 0)
        undelivered = 0
        rows = self._db.execute("SELECT state, COUNT(*), SUM(size_bytes) FROM envelopes GROUP BY state")
        for state, n, size in rows:
            counts[state] = n
            undelivered += size if state != DELIVERED else 0
        self.metrics.pending.set(counts[PENDING])
        self.metrics.rejected.set(counts[REJECTED])
        self.metrics.quarantined.set(counts[QUARANTINED])
        self.metrics.undelivered_bytes.set(undelivered)


def _open_hint(err: BaseException) -> str:
    if isinstance(err, sqlite3.OperationalError | OSError):  # permissions, read-only or full filesystem, lock
        return "the spool's directory must be writable (SQLite creates -wal and -shm files next to it)"
    return "if the file is damaged, move it aside (keep it: it may hold undelivered envelopes)"


def _check_row(keyid: object, sequence: object, envelope: object, digest: object) -> str:
    if not isinstance(keyid, str) or not keyid:
        return f"keyid is not a non-empty string ({type(keyid).__name__})"
    if not isinstance(sequence, int) or sequence < 0:
        return f"sequence is not a non-negative integer ({sequence!r})"
    if not isinstance(envelope, bytes):
        return f"envelope is {type(envelope).__name__}, not bytes"
    actual = hashlib.sha256(envelope).hexdigest()
    if actual != digest:
        return f"envelope bytes do not match their digest (stored {str(digest)[:16]}…, now {actual[:16]}…)"
    return ""
