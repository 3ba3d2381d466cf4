-- gpucensus collector schema, version 7 (PostgreSQL).
-- Current state for the read paths (site status, country totals): per node and ECCN class, the totals of the
-- node's latest attestation's devices, decommissioned GPUs left out; eccn '' holds the devices of no class and
-- those whose TPP is not established (counted in unaccounted). Rewritten in the transaction that stores a
-- node's new latest attestation and when a GPU is decommissioned (collector.store.sqlcurrent); only when they
-- change (a steady-state report writes nothing here).
CREATE TABLE node_totals (
    node_id TEXT NOT NULL REFERENCES nodes (node_id),
    eccn TEXT NOT NULL,
    gpus BIGINT NOT NULL,
    tpp BIGINT NOT NULL,
    unaccounted BIGINT NOT NULL,
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
-- The same totals per site: the sum of its nodes' node_totals, moved by the difference whenever a node's totals
-- change or the node moves; country totals and one site's totals read these rows only. A row may reach zero.
CREATE TABLE site_totals (
    site TEXT NOT NULL REFERENCES sites (id),
    eccn TEXT NOT NULL,
    gpus BIGINT NOT NULL,
    tpp BIGINT NOT NULL,
    unaccounted BIGINT NOT NULL,
    PRIMARY KEY (site, eccn)
);
INSERT INTO site_totals (site, eccn, gpus, tpp, unaccounted)
SELECT n.site, t.eccn, SUM(t.gpus), SUM(t.tpp), SUM(t.unaccounted)
FROM node_totals t JOIN nodes n ON n.node_id = t.node_id
GROUP BY n.site, t.eccn;
