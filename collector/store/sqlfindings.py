"""The SQL both stores share, part 2: findings and equivocation evidence (part 1 is `sqlbase`, part 3 `sqlstore`).

A finding about one envelope (keyid, sequence, digest) is recorded once per rule and subject, however often the
envelope is resent: its `once_key` is UNIQUE. Findings about no envelope are recorded every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gpucensus.collector.store.base import Evidence, Finding
from gpucensus.collector.store.sqlbase import SqlBase, where_equal

FINDING_COLUMNS = "id, rule_id, severity, subject, message, keyid, sequence, created_at, digest"
_EVIDENCE_COLUMNS = "id, keyid, sequence, digest, envelope, stored_digest, received_at"


class SqlFindings(SqlBase):
    def add_findings(self, findings: Iterable[Finding], evidence: Evidence | None = None) -> None:
        batch = list(findings)
        if not batch and evidence is None:
            return
        with self._tx(True) as cur:
            if evidence is not None:
                e = evidence
                cur.execute(
                    "INSERT INTO equivocation_evidence (keyid, sequence, digest, envelope, stored_digest, "
                    "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (keyid, sequence, digest) DO NOTHING",
                    (e.keyid, e.sequence, e.digest, e.envelope, e.stored_digest, self._t(e.received_at)),
                )
            self._insert_findings(cur, batch, None, None)

    def list_evidence(self, keyid: str | None = None) -> list[Evidence]:
        sql = f"SELECT {_EVIDENCE_COLUMNS} FROM equivocation_evidence"
        sql, params = where_equal(sql, "keyid", keyid)
        with self._tx(False) as cur:
            rows = cur.execute(sql + " ORDER BY id", params).fetchall()
        return [Evidence(r[1], r[2], r[3], bytes(r[4]), r[5], self._dt(r[6]), r[0]) for r in rows]  # type: ignore[arg-type]

    def _insert_findings(
        self, cur: Any, findings: Iterable[Finding], attestation_id: int | None, now: datetime | None
    ) -> None:
        fallback = now or datetime.now(UTC)
        rows = [(f.rule_id, f.severity, f.subject, f.message, f.keyid, f.sequence, attestation_id,
                 self._t(f.created_at or fallback), f.digest, _once_key(f)) for f in findings]  # fmt: skip
        if rows:
            cur.executemany(
                "INSERT INTO findings (rule_id, severity, subject, message, keyid, sequence, attestation_id, "
                "created_at, digest, once_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (once_key) DO NOTHING",
                rows,
            )

    def list_findings(
        self,
        *,
        rule_id: str | None = None,
        subject: str | None = None,
        keyid: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Finding]:
        where, params = [], []
        for column, value in (("rule_id", rule_id), ("subject", subject), ("keyid", keyid)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("created_at >= ?")
            params.append(self._t(since))
        sql = f"SELECT {FINDING_COLUMNS} FROM findings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._tx(False) as cur:
            rows = cur.execute(sql, tuple(params)).fetchall()
        return [self._finding(row) for row in rows]

    def _finding(self, row: Any) -> Finding:
        return Finding(row[1], row[2], row[3], row[4], row[5], row[6], self._dt(row[7]), row[0], row[8])


def _once_key(finding: Finding) -> str | None:
    """What makes a finding about one envelope unique (None: a finding about no envelope, never deduplicated)."""
    if not (finding.keyid and finding.sequence is not None and finding.digest):
        return None
    parts = (finding.rule_id, finding.subject, finding.keyid, str(finding.sequence), finding.digest)
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
