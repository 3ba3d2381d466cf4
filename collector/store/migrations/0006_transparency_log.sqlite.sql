-- gpucensus collector schema, version 6 (SQLite): the transparency log (RFC 9162 Merkle tree over the stored
-- envelopes). Sequencing: log_sequence holds the next leaf index; store_attestation takes it and writes it on
-- the envelope's row in the transaction that stores the envelope (UNIQUE: every index is used once).
-- Integration: log_tree holds the integrated tree size; log_hashes every complete subtree hash, keyed by
-- (level, n) = the subtree over leaves [n * 2^level, (n + 1) * 2^level). Rows of log_hashes never change.
-- An upgraded store gets a log over its history: existing envelopes are sequenced in their stored order.
UPDATE attestations SET log_index = r.position - 1
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS position FROM attestations) AS r
WHERE r.id = attestations.id;
CREATE UNIQUE INDEX attestations_log_index ON attestations (log_index);
CREATE TABLE log_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_index INTEGER NOT NULL CHECK (next_index >= 0)
);
INSERT INTO log_sequence (id, next_index) SELECT 1, COUNT(*) FROM attestations;
CREATE TABLE log_tree (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL CHECK (size >= 0)
);
INSERT INTO log_tree (id, size) VALUES (1, 0);
CREATE TABLE log_hashes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
