-- gpucensus collector schema: continuous compliance (postgres).
-- Every registry write that can change an evaluation (entities, sites, node moves, decommissions) bumps the one
-- row of registry_version in its own transaction; collectors compare it with what they evaluated to notice writes
-- made by the CLI or by another collector sharing this database.
CREATE TABLE registry_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);
-- Policy findings of the collector's continuous evaluation, per pack: a row opens when a finding appears and is
-- cleared (cleared_at set) when it goes away; message holds the latest wording (the numbers move while it is
-- open). The rows of a pack are its history.
CREATE TABLE policy_findings (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pack TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    cleared_at TIMESTAMPTZ
);
CREATE INDEX policy_findings_open ON policy_findings (pack, subject) WHERE cleared_at IS NULL;
CREATE INDEX policy_findings_subject ON policy_findings (pack, subject, opened_at);
-- One row per pack evaluated: updated by every reconciliation, whose row lock serializes collectors.
CREATE TABLE policy_evaluations (
    pack TEXT PRIMARY KEY,
    evaluated_at TIMESTAMPTZ NOT NULL
);
