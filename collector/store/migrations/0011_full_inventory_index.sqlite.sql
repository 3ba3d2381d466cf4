-- gpucensus collector schema (SQLite): the full inventories among the attestations. A compact statement must
-- name its key's latest full inventory (one seek on attestations_full_key); the inventory at a past instant
-- is each node's last full one stated by then (attestations_full_node_stated). Partial: a compact statement,
-- the steady state's row, updates neither.
CREATE INDEX attestations_full_key ON attestations (keyid, sequence) WHERE kind = 'full';
CREATE INDEX attestations_full_node_stated ON attestations (node_id, stated_at, id) WHERE kind = 'full';
-- The compact statements this collector rejected, by key and sequence: the statement after one links to it
-- (collector.ingest.compact.bridge_rejected) and is then no chain gap.
CREATE INDEX findings_key_sequence ON findings (keyid, sequence);
