-- gpucensus collector schema (PostgreSQL): what `gpucensus-collector prune` removed. Compact statements older than
-- [retention] compact_days are deleted (never a full inventory, a key's chain head, one with findings, or one
-- not yet integrated into the log, whose leaf hash log_hashes keeps); each run records the sequences it removed
-- per key, so an export can tell an auditor that a chain gap is pruning, not a loss.
CREATE TABLE pruned_ranges (
    keyid TEXT NOT NULL,
    first_sequence BIGINT NOT NULL,
    last_sequence BIGINT NOT NULL,
    pruned_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX pruned_ranges_key ON pruned_ranges (keyid, first_sequence);
-- What prune looks for, without a scan of every attestation (an append at the end per compact statement).
CREATE INDEX attestations_compact_received ON attestations (received_at) WHERE kind = 'compact';
