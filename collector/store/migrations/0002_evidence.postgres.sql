-- gpucensus collector schema, version 2 (PostgreSQL).
-- Equivocation evidence: the second signed envelope for a used (keyid, sequence), kept byte for byte for an
-- auditor, apart from the attestations table (which holds only what was accepted).
CREATE TABLE equivocation_evidence (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    keyid TEXT NOT NULL REFERENCES node_keys (keyid),
    sequence BIGINT NOT NULL,
    digest TEXT NOT NULL,
    envelope BYTEA NOT NULL,
    stored_digest TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    UNIQUE (keyid, sequence, digest)
);
-- A finding about one envelope is recorded once: once_key = SHA-256 of (rule, subject, keyid, sequence,
-- digest); NULL for findings about no envelope and for rows written before version 2 (NULLs never conflict).
ALTER TABLE findings ADD COLUMN digest TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX findings_once ON findings (once_key);
-- Device facts are signed JSON integers (up to 2**53): wider than INTEGER (SQLite's INTEGER is already 64-bit).
ALTER TABLE attestation_devices ALTER COLUMN device_index TYPE BIGINT;
ALTER TABLE attestation_devices ALTER COLUMN pd_milli TYPE BIGINT;
ALTER TABLE attestation_devices ALTER COLUMN h100e_milli TYPE BIGINT;
