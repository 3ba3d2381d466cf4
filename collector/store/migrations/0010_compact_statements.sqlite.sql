-- gpucensus collector schema (SQLite): compact statements (docs/formats.md). kind is 'full' (an inventory) or
-- 'compact' (inventory unchanged since the full envelope whose digest is inventory_digest; '' for a full one).
ALTER TABLE attestations ADD COLUMN kind TEXT NOT NULL DEFAULT 'full';
ALTER TABLE attestations ADD COLUMN inventory_digest TEXT NOT NULL DEFAULT '';
