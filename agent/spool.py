"""The durable spool: every signed envelope is written here (SQLite WAL, synchronous=FULL) before it is sent.

An envelope leaves the `pending` state only on an ack carrying a log index (`delivered`) or on a final refusal
by the collector (`rejected`, kept for the operator, never deleted). A row whose bytes no longer match the
digest written with them is `quarantined` with the reason, loudly, and the rest of the spool keeps draining.
When the undelivered bytes reach `max_bytes`, `check_room()` logs an error and counts it in a metric; the
agent then creates no new envelope until there is room (a snapshot is never signed and then dropped).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.errors import StateError

SCHEMA_VERSION = 1
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
"""

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
    ) -> None:
        self.path = Path(path)
        if must_exist and not self.path.is_file():
            raise StateError(f"no spool at {self.path}", hint="check spool.path / node.state_dir in the config")
        self.max_bytes = max_bytes
        self.keep_delivered = keep_delivered
        self.metrics = SpoolMetrics(registry if registry is not None else CollectorRegistry())
        self.metrics.max_bytes.set(max_bytes)
        self._db = self._open()
        self._refresh_metrics()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"spool {self.path} was written by a newer agent (schema {version} > {SCHEMA_VERSION})",
                    hint="run the newer agent version, or move the spool aside after it has drained",
                )
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - {"envelopes", "sqlite_sequence"}:
                listed = ", ".join(sorted(tables))
                raise StateError(
                    f"{self.path} is an SQLite database but not a gpucensus spool (tables: {listed})",
                    hint="point spool.path at the agent's own spool file; this one was left untouched",
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.DatabaseError, OSError) as err:
            raise StateError(f"cannot open spool {self.path}: {err}", hint=_open_hint(err)) from err
        if mode.lower() != "wal":
            log.warning("spool %s: journal_mode is %s, not WAL (filesystem without WAL support?)", self.path, mode)
        return db

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
        """The highest sequence of `keyid` in the spool (0 if none): the chain state must be past it."""
        row = self._db.execute("SELECT COALESCE(MAX(sequence), 0) FROM envelopes WHERE keyid = ?", (keyid,))
        return int(row.fetchone()[0])

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
