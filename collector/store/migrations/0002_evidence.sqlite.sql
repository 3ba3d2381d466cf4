-- gpucensus collector schema, version 2 (SQLite).
-- Equivocation evidence: the second signed envelope for a used (keyid, sequence), kept byte for byte for an
-- auditor, apart from the attestations table (which holds only what was accepted).
CREATE TABLE equivocation_evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    keyid TEXT NOT NULL REFERENCES node_keys (keyid),
    sequence INTEGER NOT NULL,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    stored_digest TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (keyid, sequence, digest)
);
-- A finding about one envelope is recorded once: once_key = SHA-256 of (rule, subject, keyid, sequence,
-- digest); NULL for findings about no envelope and for rows written before version 2 (NULLs never conflict).
ALTER TABLE findings ADD COLUMN digest TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX findings_once ON findings (once_key);
