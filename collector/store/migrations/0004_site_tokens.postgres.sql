-- gpucensus collector schema, version 4 (PostgreSQL).
-- Site tokens for fleets: a token enrolls up to uses_total NEW node ids; uses_left is counted down by one
-- UPDATE ... WHERE uses_left > 0 (atomic, so collectors sharing the database never over-use it); a token can be
-- revoked before it runs out; used_at is the time of its last use.
ALTER TABLE enrollment_tokens ADD COLUMN uses_total INTEGER NOT NULL DEFAULT 1;
ALTER TABLE enrollment_tokens ADD COLUMN uses_left INTEGER NOT NULL DEFAULT 1 CHECK (uses_left >= 0);
ALTER TABLE enrollment_tokens ADD COLUMN revoked_at TIMESTAMPTZ;
UPDATE enrollment_tokens SET uses_left = 0 WHERE used_at IS NOT NULL;
-- Every use of a token: which node id and key it enrolled, when (the tokens of version 3 from node_keys).
CREATE TABLE token_uses (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT NOT NULL REFERENCES enrollment_tokens (token_hash),
    node_id TEXT NOT NULL,
    keyid TEXT NOT NULL,
    used_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX token_uses_token ON token_uses (token_hash, id);
INSERT INTO token_uses (token_hash, node_id, keyid, used_at)
SELECT k.token_hash, k.node_id, k.keyid, k.enrolled_at
FROM node_keys k JOIN enrollment_tokens t ON t.token_hash = k.token_hash
ORDER BY k.enrolled_at, k.keyid;
