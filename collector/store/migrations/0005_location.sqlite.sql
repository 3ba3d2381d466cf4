-- gpucensus collector schema: location evidence (SQLite).
-- Where a site is (WGS-84 degrees), set by the operator; a site without a row has no coordinates.
CREATE TABLE site_locations (
    site TEXT PRIMARY KEY REFERENCES sites (id),
    latitude REAL NOT NULL,
    longitude REAL NOT NULL,
    set_at TEXT NOT NULL
);
-- Landmarks: timing services at known places, each with its own Ed25519 key (keyid = the measurements' signer).
CREATE TABLE landmarks (
    name TEXT PRIMARY KEY,
    keyid TEXT NOT NULL UNIQUE,
    public_key_pem TEXT NOT NULL,
    latitude REAL NOT NULL,
    longitude REAL NOT NULL,
    address TEXT NOT NULL,
    added_at TEXT NOT NULL
);
-- Every valid measurement a node delivered, as the landmark signed it; its digest is unique, so a measurement
-- delivered twice (a replay) is recognised.
CREATE TABLE location_measurements (
    digest TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    keyid TEXT NOT NULL,
    landmark TEXT NOT NULL,
    min_rtt_us INTEGER NOT NULL,
    measured_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    measurement BLOB NOT NULL
);
CREATE INDEX location_measurements_node ON location_measurements (node_id, measured_at);
-- The last location verdict per node (status, the message with its numbers), for reports and the live inventory.
CREATE TABLE node_locations (
    node_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    checked_at TEXT NOT NULL
);
