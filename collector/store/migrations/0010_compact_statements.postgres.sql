ALTER TABLE attestations ADD COLUMN kind TEXT NOT NULL DEFAULT 'full';
ALTER TABLE attestations ADD COLUMN inventory_digest TEXT NOT NULL DEFAULT '';
