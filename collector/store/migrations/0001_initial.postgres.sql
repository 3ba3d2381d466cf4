-- gpucensus collector schema, version 1 (PostgreSQL). Times are TIMESTAMPTZ.
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
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE TABLE node_keys (
    keyid TEXT PRIMARY KEY,
    public_key_pem TEXT NOT NULL,
    node_id TEXT NOT NULL,
    site TEXT NOT NULL REFERENCES sites (id),
    token_hash TEXT NOT NULL,
    enrolled_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX node_keys_node ON node_keys (node_id);
CREATE TABLE attestations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    keyid TEXT NOT NULL REFERENCES node_keys (keyid),
    sequence BIGINT NOT NULL,
    digest TEXT NOT NULL,
    envelope BYTEA NOT NULL,
    node_id TEXT NOT NULL,
    site TEXT NOT NULL,
    stated_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    previous TEXT NOT NULL,
    status TEXT NOT NULL,
    log_index BIGINT,
    checkpoint BYTEA NOT NULL,
    UNIQUE (keyid, sequence)
);
CREATE TABLE attestation_devices (
    attestation_id BIGINT NOT NULL REFERENCES attestations (id),
    pos INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    device_index INTEGER NOT NULL,
    name TEXT NOT NULL,
    bus_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    model TEXT NOT NULL,
    basis TEXT NOT NULL,
    tpp BIGINT,
    die_area_mm2 TEXT,
    pd_milli INTEGER,
    eccn TEXT NOT NULL,
    h100e_milli INTEGER,
    datacenter BOOLEAN NOT NULL,
    PRIMARY KEY (attestation_id, pos)
);
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites (id),
    keyid TEXT NOT NULL,
    enrolled_at TIMESTAMPTZ NOT NULL,
    last_attested_at TIMESTAMPTZ,
    interval_seconds INTEGER,
    last_attestation_id BIGINT REFERENCES attestations (id),
    last_stated_at TIMESTAMPTZ,
    last_sequence BIGINT
);
CREATE TABLE gpus (
    uuid TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    site TEXT NOT NULL,
    country TEXT NOT NULL,
    keyid TEXT NOT NULL,
    acquired TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    last_stated_at TIMESTAMPTZ NOT NULL,
    decommissioned_at TIMESTAMPTZ,
    decommission_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE findings (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    keyid TEXT NOT NULL,
    sequence BIGINT,
    attestation_id BIGINT REFERENCES attestations (id),
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX findings_created ON findings (created_at);
CREATE INDEX findings_attestation ON findings (attestation_id);
