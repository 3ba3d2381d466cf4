-- gpucensus collector schema, version 10 (SQLite).
-- The live inventory's device groups (report, evaluate --live, the dashboard, continuous compliance): per node,
-- the device count of each group of its latest attestation's devices, decommissioned GPUs left out; a group is
-- (kind, model, tpp, die_area, datacenter, acquired), all non-null: kind 'model' (catalogue basis with a model),
-- 'tpp' / 'tpp_area' (TPP established; 'tpp_area' with a die area), 'none' (TPP not established: unaccounted);
-- acquired is the UTC date of the GPU's first sighting, else of the attestation's reception. Rewritten with
-- node_totals, only when they change (collector.store.sqlgroups).
CREATE TABLE node_groups (
    node_id TEXT NOT NULL REFERENCES nodes (node_id),
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    tpp INTEGER NOT NULL,
    die_area TEXT NOT NULL,
    datacenter INTEGER NOT NULL,
    acquired TEXT NOT NULL,
    devices INTEGER NOT NULL,
    PRIMARY KEY (node_id, kind, model, tpp, die_area, datacenter, acquired)
);
INSERT INTO node_groups (node_id, kind, model, tpp, die_area, datacenter, acquired, devices)
SELECT node_id, kind, model, tpp, die_area, datacenter, acquired, COUNT(*) FROM (
    SELECT n.node_id,
           CASE WHEN d.basis = 'catalogue' AND d.model <> '' THEN 'model'
                WHEN d.tpp IS NOT NULL AND d.die_area_mm2 IS NULL THEN 'tpp'
                WHEN d.tpp IS NOT NULL THEN 'tpp_area' ELSE 'none' END AS kind,
           CASE WHEN d.basis = 'catalogue' AND d.model <> '' THEN d.model ELSE '' END AS model,
           CASE WHEN d.basis = 'catalogue' AND d.model <> '' THEN 0 ELSE COALESCE(d.tpp, 0) END AS tpp,
           CASE WHEN d.basis = 'catalogue' AND d.model <> '' OR d.tpp IS NULL THEN '' ELSE COALESCE(d.die_area_mm2, '') END
               AS die_area,
           CASE WHEN d.basis = 'catalogue' AND d.model <> '' OR d.tpp IS NULL THEN 0 ELSE d.datacenter END
               AS datacenter,
           CASE WHEN (d.basis = 'catalogue' AND d.model <> '') OR d.tpp IS NOT NULL
                THEN substr(COALESCE(g.acquired, a.received_at), 1, 10) ELSE '' END AS acquired
    FROM nodes n JOIN attestations a ON a.id = n.last_attestation_id
    JOIN attestation_devices d ON d.attestation_id = COALESCE(a.devices_from, a.id)
    LEFT JOIN gpus g ON g.uuid = d.uuid AND d.uuid <> ''
    WHERE g.decommissioned_at IS NULL
) grouped
GROUP BY node_id, kind, model, tpp, die_area, datacenter, acquired;
-- The same groups per site: the sum of its nodes' node_groups, moved by the difference whenever a node's groups
-- change or the node moves; a group no device is left in is deleted. `report` reads these rows only.
CREATE TABLE site_groups (
    site TEXT NOT NULL REFERENCES sites (id),
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    tpp INTEGER NOT NULL,
    die_area TEXT NOT NULL,
    datacenter INTEGER NOT NULL,
    acquired TEXT NOT NULL,
    devices INTEGER NOT NULL,
    PRIMARY KEY (site, kind, model, tpp, die_area, datacenter, acquired)
);
INSERT INTO site_groups (site, kind, model, tpp, die_area, datacenter, acquired, devices)
SELECT n.site, g.kind, g.model, g.tpp, g.die_area, g.datacenter, g.acquired, SUM(g.devices)
FROM node_groups g JOIN nodes n ON n.node_id = g.node_id
GROUP BY n.site, g.kind, g.model, g.tpp, g.die_area, g.datacenter, g.acquired;
