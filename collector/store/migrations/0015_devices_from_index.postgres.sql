-- gpucensus collector schema: an index on attestations.devices_from (the attestation whose device rows a report
-- repeats). Deleting an attestation (`gpucensus-collector prune` deletes old compact statements) makes the
-- database check that no row still points at it; without this index that check reads every attestation, once
-- per deleted row. Partial: most rows hold their own devices (NULL) or are compact statements (NULL).
CREATE INDEX attestations_devices_from ON attestations (devices_from) WHERE devices_from IS NOT NULL;
