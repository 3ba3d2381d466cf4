-- gpucensus collector schema: the transparency log's leaf hashes packed by tile. A tile is 256 consecutive
-- leaves; once all 256 are integrated, their leaf hashes are kept as one row (8,192 bytes, in leaf order) and
-- their rows in log_hashes below level 8 are deleted, in the transaction that packs them: 32 bytes a leaf
-- instead of a row (and an index entry) per leaf and per even level. Hashes at levels 1 to 7 inside a packed
-- tile are computed from its leaf hashes when a proof asks for them; level 8 and above stay in log_hashes.
-- log_tree.packed counts the tiles packed so far (all of 0 .. packed - 1): a store integrated before this
-- migration is packed by the integrator from the first tile on, a few tiles a round.
CREATE TABLE log_tiles (
    idx BIGINT PRIMARY KEY,
    hashes BYTEA NOT NULL
);
ALTER TABLE log_tree ADD COLUMN packed BIGINT NOT NULL DEFAULT 0;
-- random hashes do not compress: stored out of line as they are, without trying
ALTER TABLE log_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;
