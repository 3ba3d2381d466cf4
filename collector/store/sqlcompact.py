"""The SQL both stores share for compact statements (docs/formats.md, "Compact statement").

A compact statement is one row of `attestations` (`kind` 'compact', `inventory_digest` the full envelope it
names) and no device rows. Storing one is four statements in one transaction: claim (keyid, sequence), move
the node's last report and last sequence forward (staleness, `node list`), its findings (usually none), its log
index. The node's current inventory (`last_attestation_id`, `last_stated_at`), its totals and the GPUs' state
stay the full attestation's: nothing the read paths sum changes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from gpucensus.collector.store import envelopes
from gpucensus.collector.store.base import AttestationRecord, ConflictError, FullInventory
from gpucensus.collector.store.compact_fields import RowFacts
from gpucensus.collector.store.sqllog import SqlLog

COMPACT = "compact"

# the key's latest full inventory, its node's binding, the node's latest event and one of its GPUs decommissioned
_LATEST_FULL_SQL = (
    "SELECT a.id, a.sequence, a.digest, a.node_id, a.site, a.received_at, "
    "(SELECT n.keyid FROM nodes n WHERE n.node_id = a.node_id), "
    "(SELECT n.last_attestation_id FROM nodes n WHERE n.node_id = a.node_id), "
    "(SELECT e.event FROM node_events e WHERE e.node_id = a.node_id ORDER BY e.id DESC LIMIT 1), "
    "(SELECT e.created_at FROM node_events e WHERE e.node_id = a.node_id ORDER BY e.id DESC LIMIT 1), "
    "(SELECT d.uuid FROM attestation_devices d JOIN gpus g ON g.uuid = d.uuid "
    "WHERE d.attestation_id = COALESCE(a.devices_from, a.id) "
    "AND d.uuid <> '' AND g.decommissioned_at IS NOT NULL LIMIT 1) "
    "FROM attestations a WHERE a.keyid = ? AND a.kind = 'full' ORDER BY a.sequence DESC LIMIT 1"
)


class SqlCompact(SqlLog):
    def latest_full(self, keyid: str) -> FullInventory | None:
        with self._tx(False) as cur:  # one statement: one round trip on the compact path
            row = cur.execute(_LATEST_FULL_SQL, (keyid,)).fetchone()
        if row is None:
            return None
        received = self._dt(row[5])
        assert received is not None
        # enrolment precedes every attestation of its key; any later binding change voids the reference
        event_at = self._dt(row[9]) if row[8] else None
        later_event = event_at is not None and row[8] != "enrolled" and event_at > received
        return FullInventory(
            id=int(row[0]),
            sequence=int(row[1]),
            digest=row[2],
            node_id=row[3],
            site=row[4],
            received_at=received,
            current=row[6] == keyid and row[7] is not None and int(row[7]) == int(row[0]),
            node_event=row[8] if later_event else "",
            decommissioned=row[10] or "",
        )

    def store_compact(self, record: AttestationRecord) -> AttestationRecord:
        # before the transaction (CPU, not lock time); the row's own columns rebuild most of it (COMPACT_FIELDS)
        facts = RowFacts(record.keyid, record.sequence, record.previous, record.inventory_digest, record.node_id,
                         record.digest)  # fmt: skip
        codec, stored = envelopes.encode(record.envelope, facts)
        with self._tx(True) as cur:
            row = cur.execute(
                "INSERT INTO attestations (keyid, sequence, digest, envelope, envelope_codec, node_id, site, "
                "stated_at, received_at, previous, status, log_index, checkpoint, kind, inventory_digest) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {self._log_index_at_insert}, ?, ?, ?) "
                "ON CONFLICT (keyid, sequence) DO NOTHING RETURNING id",
                (record.keyid, record.sequence, record.digest, stored, codec, record.node_id, record.site,
                 self._t(record.timestamp), self._t(record.received_at), record.previous, record.status,
                 b"", COMPACT, record.inventory_digest),
            ).fetchone()  # fmt: skip
            if row is None:
                raise ConflictError(record.keyid, record.sequence)
            attestation_id = int(row[0])
            self._report_seen(cur, record)
            if record.findings:
                self._insert_findings(cur, record.findings, attestation_id, record.received_at)
            log_index = self._sequence(cur, attestation_id)  # last: the counter row is held until the commit
        return replace(record, id=attestation_id, log_index=log_index, kind=COMPACT)

    def rejected_compact(self, keyid: str, first: int, last: int) -> dict[int, str]:
        """{sequence: envelope digest} of the key's compact statements in first..last that this collector
        rejected (a `compact.*` finding recorded with the digest)."""
        with self._tx(False) as cur:
            rows = cur.execute(
                "SELECT sequence, digest FROM findings WHERE keyid = ? AND sequence BETWEEN ? AND ? "
                "AND substr(rule_id, 1, 8) = 'compact.' AND digest <> ''",
                (keyid, first, last),
            ).fetchall()
        return {int(r[0]): r[1] for r in rows}

    def prune_compact(self, before: datetime, now: datetime, batch: int = 5000) -> int:
        """Delete compact statements received before `before`, except each key's chain head, one with findings
        and one the log has not integrated yet (its envelope is still to be hashed); record the removed sequences
        in `pruned_ranges`. Full inventories, log hashes, findings and evidence are never touched. Returns how
        many were deleted (in transactions of `batch`)."""
        total = 0
        while True:
            with self._tx(True) as cur:
                rows = cur.execute(
                    "SELECT a.id, a.keyid, a.sequence FROM attestations a WHERE a.kind = 'compact' "
                    "AND a.received_at < ? AND a.log_index < (SELECT size FROM log_tree WHERE id = 1) "
                    "AND a.sequence < (SELECT MAX(b.sequence) FROM attestations b WHERE b.keyid = a.keyid) "
                    "AND NOT EXISTS (SELECT 1 FROM findings f WHERE f.attestation_id = a.id) "
                    "ORDER BY a.received_at LIMIT ?",  # the index's order: no sort of every candidate
                    (self._t(before), batch),
                ).fetchall()
                if not rows:
                    return total
                ranges = _ranges(sorted((r[1], int(r[2])) for r in rows))
                cur.executemany(
                    "INSERT INTO pruned_ranges (keyid, first_sequence, last_sequence, pruned_at) VALUES (?, ?, ?, ?)",
                    [(keyid, first, last, self._t(now)) for keyid, first, last in ranges],
                )
                ids = [int(r[0]) for r in rows]
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    cur.execute(f"DELETE FROM attestations WHERE id IN ({', '.join('?' * len(chunk))})", tuple(chunk))
                total += len(ids)

    def rejected_compact_ranges(self, keyids: list[str]) -> dict[str, list[tuple[int, int]]]:
        """{keyid: [(first, last), ...]} of the compact statements this collector rejected (never stored)."""
        out: dict[str, list[tuple[int, int]]] = {}
        with self._tx(False) as cur:
            for keyid in sorted(set(keyids)):
                rows = cur.execute(
                    "SELECT DISTINCT sequence FROM findings WHERE keyid = ? AND sequence IS NOT NULL "
                    "AND substr(rule_id, 1, 8) = 'compact.' ORDER BY sequence",
                    (keyid,),
                ).fetchall()
                for _, first, last in _ranges([(keyid, int(r[0])) for r in rows]):
                    out.setdefault(keyid, []).append((first, last))
        return out

    def pruned_ranges(self, keyids: list[str]) -> dict[str, list[tuple[int, int]]]:
        """{keyid: [(first, last), ...]} of the sequences `prune_compact` removed, per key, in order."""
        out: dict[str, list[tuple[int, int]]] = {}
        with self._tx(False) as cur:
            for keyid in sorted(set(keyids)):
                rows = cur.execute(
                    "SELECT first_sequence, last_sequence FROM pruned_ranges WHERE keyid = ? ORDER BY first_sequence",
                    (keyid,),
                ).fetchall()
                if rows:
                    out[keyid] = [(int(r[0]), int(r[1])) for r in rows]
        return out

    def _report_seen(self, cur: Any, r: AttestationRecord) -> None:
        """The node's last report (what staleness reads) and last sequence, by its bound key only; never back."""
        received = self._t(r.received_at)
        cur.execute(
            "UPDATE nodes SET last_attested_at = CASE WHEN last_attested_at IS NULL OR last_attested_at < ? THEN ? "
            "ELSE last_attested_at END, interval_seconds = COALESCE(?, interval_seconds), "
            "last_sequence = CASE WHEN last_sequence IS NULL OR last_sequence < ? THEN ? ELSE last_sequence END "
            "WHERE node_id = ? AND keyid = ?",
            (received, received, r.interval_seconds, r.sequence, r.sequence, r.node_id, r.keyid),
        )


def _ranges(rows: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(keyid, first, last) runs of consecutive sequences in `rows`, sorted by key and sequence."""
    out: list[tuple[str, int, int]] = []
    for keyid, sequence in rows:
        if out and out[-1][0] == keyid and out[-1][2] == sequence - 1:
            out[-1] = (keyid, out[-1][1], sequence)
        else:
            out.append((keyid, sequence, sequence))
    return out
