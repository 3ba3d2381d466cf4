-- gpucensus collector schema, version 3 (SQLite).
-- A node id is bound to one key at a time; only an explicit, recorded action rebinds or moves it.
-- A token may be created for one node id ('' = any new node id): only that node id can use it, and it re-keys it.
ALTER TABLE enrollment_tokens ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
-- Every enrollment, re-keying, move and revocation: who (actor), what, when.
CREATE TABLE node_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    event TEXT NOT NULL,
    keyid TEXT NOT NULL,
    old_keyid TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL,
    old_site TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX node_events_node ON node_events (node_id, id);
-- Before version 3 a second token rebound a node id and left its earlier keys live: keep the key the node row
-- names, revoke the others (each recorded as an event), then let the database keep one active key per node.
INSERT INTO node_events (node_id, event, keyid, site, actor, reason, created_at)
SELECT k.node_id, 'revoked', k.keyid, n.site, 'migration 0003', 'the node was rebound to another key by a token',
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now')
FROM node_keys k JOIN nodes n ON n.node_id = k.node_id
WHERE k.revoked_at IS NULL AND k.keyid <> n.keyid
ORDER BY k.enrolled_at, k.keyid;
UPDATE node_keys SET revoked_at = strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now')
WHERE revoked_at IS NULL AND keyid <> (SELECT n.keyid FROM nodes n WHERE n.node_id = node_keys.node_id);
CREATE UNIQUE INDEX node_keys_one_active ON node_keys (node_id) WHERE revoked_at IS NULL;
