"""Rows as an older collector wrote them, for upgrade tests: `store_as_before(store, record)` inserts an
attestation the way `store_attestation` did before migration `compact_storage` (the envelope as received, a device row
per GPU of every report) and before the transparency log (no leaf index), by plain SQL on the store's own connection,
so it runs against a store migrated to any older version."""

from __future__ import annotations

from typing import Any

from gpucensus.collector.store.base import AttestationRecord


def store_as_before(store: Any, r: AttestationRecord) -> int:
    with store._tx(True) as cur:
        row = cur.execute(
            "INSERT INTO attestations (keyid, sequence, digest, envelope, node_id, site, stated_at, received_at, "
            "previous, status, checkpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (r.keyid, r.sequence, r.digest, r.envelope, r.node_id, r.site, store._t(r.timestamp),
             store._t(r.received_at), r.previous, r.status, r.checkpoint),
        ).fetchone()  # fmt: skip
        attestation_id = int(row[0])
        cur.executemany(
            "INSERT INTO attestation_devices (attestation_id, pos, uuid, device_index, name, bus_id, status, error, "
            "model, basis, tpp, die_area_mm2, pd_milli, eccn, h100e_milli, datacenter) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(attestation_id, pos, d.uuid, d.index, d.name, d.bus_id, d.status, d.error, d.model, d.basis, d.tpp,
              d.die_area_mm2, d.pd_milli, d.eccn, d.h100e_milli, d.datacenter) for pos, d in enumerate(r.devices)],
        )  # fmt: skip
        cur.execute(
            "INSERT INTO nodes (node_id, site, keyid, enrolled_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (node_id) DO NOTHING",
            (r.node_id, r.site, r.keyid, store._t(r.received_at)),
        )
        cur.executemany(
            "INSERT INTO gpus (uuid, node_id, site, country, keyid, acquired, last_seen, last_stated_at) "
            "SELECT ?, ?, ?, country, ?, ?, ?, ? FROM sites WHERE id = ? ON CONFLICT (uuid) DO NOTHING",
            [(d.uuid, r.node_id, r.site, r.keyid, store._t(r.received_at), store._t(r.received_at),
              store._t(r.timestamp), r.site) for d in r.devices if d.uuid],
        )  # fmt: skip
        cur.execute(
            "UPDATE nodes SET last_attested_at = ?, last_attestation_id = ?, last_stated_at = ?, last_sequence = ? "
            "WHERE node_id = ? AND (last_stated_at IS NULL OR last_stated_at <= ?)",
            (store._t(r.received_at), attestation_id, store._t(r.timestamp), r.sequence, r.node_id,
             store._t(r.timestamp)),
        )  # fmt: skip
    return attestation_id
