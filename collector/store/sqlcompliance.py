"""The SQL both stores share, part 4: the continuous compliance state (the registry version counter, the
recorded policy findings and the notes of changed inventories, migration `compliance_state`).

Reconciliation is serialized per pack by an UPDATE of the pack's `policy_evaluations` row (a row lock in
PostgreSQL; SQLite write transactions are serialized anyway), so two collectors sharing one database never open
the same finding twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from gpucensus.collector.store.base import PolicyFinding
from gpucensus.collector.store.sqlbase import SqlBase

_COLUMNS = "id, pack, rule_id, severity, subject, message, opened_at, cleared_at"
CHANGES_KEPT = timedelta(hours=1)  # inventory change notes older than this are deleted


class SqlCompliance(SqlBase):
    def registry_version(self) -> int:
        with self._tx(False) as cur:
            row = cur.execute("SELECT version FROM registry_version WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def reconcile_policy_findings(
        self, pack: str, subjects: Iterable[str] | None, findings: Iterable[PolicyFinding], now: datetime
    ) -> tuple[list[PolicyFinding], list[PolicyFinding]]:
        within = None if subjects is None else frozenset(subjects)
        wanted: dict[tuple[str, ...], list[PolicyFinding]] = defaultdict(list)
        for f in findings:
            if within is None or f.subject in within:
                wanted[f.identity].append(f)
        opened: list[PolicyFinding] = []
        cleared: list[PolicyFinding] = []
        with self._tx(True) as cur:
            self._lock_pack(cur, pack, now)
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM policy_findings WHERE pack = ? AND cleared_at IS NULL ORDER BY id", (pack,)
            ).fetchall()
            held: dict[tuple[str, ...], list[PolicyFinding]] = defaultdict(list)
            for row in rows:
                record = self._policy_finding(row)
                if within is None or record.subject in within:
                    held[record.identity].append(record)
            for identity in sorted(held.keys() | wanted.keys()):
                old, new = held.get(identity, []), sorted(wanted.get(identity, []), key=lambda f: f.message)
                for record, finding in zip(old, new, strict=False):
                    if record.message != finding.message:
                        cur.execute("UPDATE policy_findings SET message = ? WHERE id = ?", (finding.message, record.id))
                for record in old[len(new) :]:
                    cur.execute("UPDATE policy_findings SET cleared_at = ? WHERE id = ?", (self._t(now), record.id))
                    cleared.append(PolicyFinding(**{**record.__dict__, "cleared_at": now}))
                for finding in new[len(old) :]:
                    row = cur.execute(
                        "INSERT INTO policy_findings (pack, rule_id, severity, subject, message, opened_at) "
                        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                        (pack, finding.rule_id, finding.severity, finding.subject, finding.message, self._t(now)),
                    ).fetchone()
                    opened.append(PolicyFinding(finding.rule_id, finding.severity, finding.subject, finding.message,
                                                now, None, pack, int(row[0])))  # fmt: skip
        return opened, cleared

    def _lock_pack(self, cur: Any, pack: str, now: datetime) -> None:
        cur.execute(
            "INSERT INTO policy_evaluations (pack, evaluated_at) VALUES (?, ?) ON CONFLICT (pack) DO NOTHING",
            (pack, self._t(now)),
        )
        cur.execute("UPDATE policy_evaluations SET evaluated_at = ? WHERE pack = ?", (self._t(now), pack))

    def policy_findings(self, pack: str, *, subject: str | None = None, open_only: bool = False) -> list[PolicyFinding]:
        sql, params = f"SELECT {_COLUMNS} FROM policy_findings WHERE pack = ?", [pack]
        if subject is not None:
            sql, params = sql + " AND subject = ?", [*params, subject]
        if open_only:
            sql += " AND cleared_at IS NULL"
        with self._tx(False) as cur:
            rows = cur.execute(sql + " ORDER BY opened_at, id", tuple(params)).fetchall()
        return [self._policy_finding(r) for r in rows]

    def _policy_finding(self, row: Any) -> PolicyFinding:
        return PolicyFinding(row[2], row[3], row[4], row[5], self._dt(row[6]), self._dt(row[7]), row[1], int(row[0]))

    def note_inventory_change(self, site: str, now: datetime) -> int:
        with self._tx(True) as cur:
            cur.execute("DELETE FROM inventory_changes WHERE changed_at < ?", (self._t(now - CHANGES_KEPT),))
            row = cur.execute(
                "INSERT INTO inventory_changes (site, changed_at) VALUES (?, ?) RETURNING id", (site, self._t(now))
            ).fetchone()
        return int(row[0])

    def inventory_changes(self, since: datetime) -> list[tuple[int, str]]:
        with self._tx(False) as cur:
            rows = cur.execute(
                "SELECT id, site FROM inventory_changes WHERE changed_at >= ? ORDER BY id", (self._t(since),)
            ).fetchall()
        return [(int(r[0]), r[1]) for r in rows]
