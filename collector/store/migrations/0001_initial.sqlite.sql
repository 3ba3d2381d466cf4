-- gpucensus collector schema, version 1 (SQLite). Times are TEXT "YYYY-MM-DDTHH:MM:SS.ffffffZ" (sortable).
CREATE TABLE entities (
    id TEXT PRIMARY KEY,
    headquarters TEXT NOT NULL,
    auth TEXT NOT NULL
);
CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    country TEXT NOT NULL,
    entity TEXT NOT NULL REFERENCES entities (id)
);
CREATE TABLE enrollment_tokens (
    token_hash TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE node_keys (
    keyid TEXT PRIMARY KEY,
    public_key_pem TEXT NOT NULL,
    node_id TEXT NOT NULL,
    site TEXT NOT NULL REFERENCES sites (id),
    token_hash TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX node_keys_node ON node_keys (node_id);
CREATE TABLE attestations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    keyid TEXT NOT NULL REFERENCES node_keys (keyid),
    sequence INTEGER NOT NULL,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    node_id TEXT NOT NULL,
    site TEXT NOT NULL,
    stated_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    previous TEXT NOT NULL,
    status TEXT NOT NULL,
    log_index INTEGER,
    checkpoint BLOB NOT NULL,
    UNIQUE (keyid, sequence)
);
CREATE TABLE attestation_devices (
    attestation_id INTEGER NOT NULL REFERENCES attestations (id),
    pos INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    device_index INTEGER NOT NULL,
    name TEXT NOT NULL,
    bus_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    model TEXT NOT NULL,
    basis TEXT NOT NULL,
    tpp INTEGER,
    die_area_mm2 TEXT,
    pd_milli INTEGER,
    eccn TEXT NOT NULL,
    h100e_milli INTEGER,
    datacenter INTEGER NOT NULL,
    PRIMARY KEY (attestation_id, pos)
);
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites (id),
    keyid TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    last_attested_at TEXT,
    interval_seconds INTEGER,
    last_attestation_id INTEGER REFERENCES attestations (id),
    last_stated_at TEXT,
    last_sequence INTEGER
);
CREATE TABLE gpus (
    uuid TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    site TEXT NOT NULL,
    country TEXT NOT NULL,
    keyid TEXT NOT NULL,
    acquired TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    last_stated_at TEXT NOT NULL,
    decommissioned_at TEXT,
    decommission_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    keyid TEXT NOT NULL,
    sequence INTEGER,
    attestation_id INTEGER REFERENCES attestations (id),
    created_at TEXT NOT NULL
);
CREATE INDEX findings_created ON findings (created_at);
CREATE INDEX findings_attestation ON findings (attestation_id);
