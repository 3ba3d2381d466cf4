-- gpucensus collector schema, version 5 (SQLite).
-- Current state for the read paths (site status, country totals): per node and ECCN class, the totals of the
-- node's latest attestation's devices, decommissioned GPUs left out; eccn '' holds the devices of no class and
-- those whose TPP is not established (counted in unaccounted). Rewritten in the transaction that stores a
-- node's new latest attestation and when a GPU is decommissioned (collector.store.sqlcurrent), so a query sums
-- about one row per node instead of joining every current device.
CREATE TABLE node_totals (
    node_id TEXT NOT NULL REFERENCES nodes (node_id),
    eccn TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    tpp INTEGER NOT NULL,
    unaccounted INTEGER NOT NULL,
    PRIMARY KEY (node_id, eccn)
);
-- One site's nodes (status, node count, last attested) without a scan of every node.
CREATE INDEX nodes_site ON nodes (site, node_id);
INSERT INTO node_totals (node_id, eccn, gpus, tpp, unaccounted)
SELECT n.node_id, CASE WHEN d.tpp IS NULL THEN '' ELSE d.eccn END, COUNT(*), COALESCE(SUM(d.tpp), 0),
       SUM(CASE WHEN d.tpp IS NULL THEN 1 ELSE 0 END)
FROM nodes n JOIN attestation_devices d ON d.attestation_id = n.last_attestation_id
LEFT JOIN gpus g ON g.uuid = d.uuid AND d.uuid <> ''
WHERE g.decommissioned_at IS NULL
GROUP BY n.node_id, CASE WHEN d.tpp IS NULL THEN '' ELSE d.eccn END;
