-- gpucensus collector schema (SQLite): the inventory at a past instant (collector.history).
-- For each node, its last attestation stated at or before the instant is one index seek on (node_id, stated_at):
-- a point in time costs one seek per node, however many attestations the store holds.
CREATE INDEX attestations_node_stated ON attestations (node_id, stated_at, id);
