-- gpucensus collector schema (SQLite): storage that stays small (collector.store.envelopes, sqlstore).
-- envelope_codec: how `envelope` is encoded (0 the bytes as received: every row stored before this migration;
-- 1 zlib; 2 zlib of the DSSE JSON with its payload decoded from base64); readers always get the bytes received.
-- devices_from: the attestation whose attestation_devices rows this one repeats (its node's device facts had not
-- changed), NULL when it has rows of its own (or none). Readers take COALESCE(devices_from, id).
ALTER TABLE attestations ADD COLUMN envelope_codec INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attestations ADD COLUMN devices_from INTEGER REFERENCES attestations (id);
