"""The SQL both stores share, part 2b: binding node ids to keys and sites (enroll, re-key, move, revoke).

The rule: a node id is bound to one key at a time and to one site, and only an explicit, recorded action
changes either: `enroll` binds a NEW node id (or, with a token created for that node id, re-keys it); `rekey_node`
and `move_node` are operator actions; every change is a row of `node_events` written in the same transaction.
The database keeps the rule under concurrency (several collectors on one PostgreSQL): a new node row is claimed
with `INSERT … ON CONFLICT DO NOTHING`, a rebinding is a compare-and-swap `UPDATE nodes … WHERE keyid = old`
(which takes the node row's lock first), and a partial UNIQUE index allows one unrevoked key per node id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gpucensus.collector.store.base import (
    Finding,
    NodeBoundError,
    NodeEvent,
    NodeKey,
    RecordExistsError,
    RecordNotFoundError,
    TokenRejectedError,
)
from gpucensus.collector.store.sqlbase import KEY_COLUMNS, USABLE_TOKEN, where_equal
from gpucensus.collector.store.sqltokens import SqlTokens

TAKEOVER_RULE = "enroll.node-already-bound"
_EVENT_COLUMNS = "id, node_id, event, keyid, site, actor, created_at, old_keyid, old_site, reason"
_REKEY_HINT = (
    "the operator re-keys a node explicitly: gpucensus-collector node rekey NODE --public-key FILE, "
    "or token create --site SITE --node-id NODE"
)


def token_actor(token_hash: str) -> str:
    """How a token is named in records: the first 12 hex digits of its hash (never the token)."""
    return f"token:{token_hash[:12]}"


class SqlNodes(SqlTokens):
    def enroll(
        self, keyid: str, public_key_pem: str, node_id: str, site: str, token_hash: str, now: datetime
    ) -> NodeKey:
        refused: NodeBoundError | None = None
        with self._tx(True) as cur:
            token = cur.execute(
                f"SELECT site, node_id FROM enrollment_tokens WHERE token_hash = ? AND {USABLE_TOKEN}",
                (token_hash, self._t(now)),
            ).fetchone()
            row = cur.execute(f"SELECT {KEY_COLUMNS}, token_hash FROM node_keys WHERE keyid = ?", (keyid,)).fetchone()
            if row is not None:
                return _enrolled_again(self._key(row), row[6], node_id, token_hash, token is not None)
            if token is None:
                raise TokenRejectedError(
                    "enrollment token is unknown, used up, revoked or expired",
                    hint="create a new one: gpucensus-collector token create --site SITE [--uses N]",
                )
            token_site, token_node = token
            if site and site != token_site:
                raise TokenRejectedError(f"enrollment token is for site {token_site!r}, not {site!r}")
            if token_node and token_node != node_id:
                raise TokenRejectedError(f"enrollment token is for node {token_node!r}, not {node_id!r}")
            node = cur.execute("SELECT site, keyid FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            actor = token_actor(token_hash)
            if node is None:
                self._claim_node(cur, node_id, token_site, keyid, now)
                self._insert_key(cur, keyid, public_key_pem, node_id, token_site, token_hash, now)
                self._event(cur, NodeEvent(node_id, "enrolled", keyid, token_site, actor, now))
            elif token_node == node_id:
                if node[0] != token_site:
                    raise NodeBoundError(
                        f"node {node_id!r} is at site {node[0]!r}; this token re-keys it at site {token_site!r}",
                        hint=f"create the token for site {node[0]}, or move the node first: gpucensus-collector "
                        f"node move {node_id} --site {token_site}",
                    )
                self._rebind(cur, node_id, node[0], node[1], keyid, public_key_pem, token_hash, now, actor, "")
            else:
                refused = NodeBoundError(
                    f"node {node_id!r} is already enrolled with another key: an enrollment token never rebinds a "
                    f"node ({_REKEY_HINT})",
                    hint=_REKEY_HINT,
                )
                self._insert_findings(cur, [_takeover(node_id, node, keyid, token_site, token_hash, now)], None, now)
            if refused is None and self._consume(cur, token_hash, now, node_id, keyid) is None:
                raise TokenRejectedError("enrollment token is unknown, used up, revoked or expired")  # just now
        if refused is not None:  # raised after the commit: the finding stays, the token stays unused
            raise refused
        return NodeKey(keyid, public_key_pem, node_id, token_site, now)

    def preregister_node(
        self, keyid: str, public_key_pem: str, node_id: str, site: str, now: datetime, actor: str
    ) -> NodeKey:
        with self._tx(True) as cur:
            if not cur.execute("SELECT 1 FROM sites WHERE id = ?", (site,)).fetchone():
                raise RecordNotFoundError(
                    f"site {site!r} does not exist", hint="add it first: gpucensus-collector site add"
                )
            _refuse_enrolled_key(cur, keyid)
            bound = cur.execute("SELECT site FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            if bound is not None:
                raise NodeBoundError(
                    f"node {node_id!r} is already enrolled (site {bound[0]!r}); enroll binds only a new node id",
                    hint=_REKEY_HINT,
                )
            self._claim_node(cur, node_id, site, keyid, now)
            self._insert_key(cur, keyid, public_key_pem, node_id, site, "", now)
            self._event(cur, NodeEvent(node_id, "enrolled", keyid, site, actor, now))
        return NodeKey(keyid, public_key_pem, node_id, site, now)

    def rekey_node(
        self, node_id: str, keyid: str, public_key_pem: str, now: datetime, actor: str, reason: str = ""
    ) -> NodeKey:
        with self._tx(True) as cur:
            node = cur.execute("SELECT site, keyid FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            if node is None:
                raise RecordNotFoundError(
                    f"no node {node_id!r}", hint="enroll a new node with a token: gpucensus-collector token create"
                )
            _refuse_enrolled_key(cur, keyid)
            self._rebind(cur, node_id, node[0], node[1], keyid, public_key_pem, "", now, actor, reason)
        return NodeKey(keyid, public_key_pem, node_id, node[0], now)

    def move_node(self, node_id: str, site: str, now: datetime, actor: str, reason: str = "") -> bool:
        with self._tx(True) as cur:
            if not cur.execute("SELECT 1 FROM sites WHERE id = ?", (site,)).fetchone():
                raise RecordNotFoundError(
                    f"site {site!r} does not exist", hint="add it first: gpucensus-collector site add"
                )
            node = cur.execute("SELECT site, keyid FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            if node is None:
                raise RecordNotFoundError(f"no node {node_id!r}", hint="see: gpucensus-collector node list")
            if node[0] == site:
                return False
            cur.execute("UPDATE nodes SET site = ? WHERE node_id = ? AND site = ?", (site, node_id, node[0]))
            if cur.rowcount != 1:
                raise NodeBoundError(f"node {node_id!r} changed while it was being moved; try again")
            cur.execute("UPDATE node_keys SET site = ? WHERE node_id = ? AND revoked_at IS NULL", (site, node_id))
            self._move_totals(cur, node_id, node[0], site)
            event = NodeEvent(node_id, "moved", node[1], site, actor, now, node[1], node[0], reason)
            self._event(cur, event)
            self._bump_registry(cur)
        return True

    def revoke_key(self, keyid: str, now: datetime, actor: str = "operator") -> bool:
        with self._tx(True) as cur:
            row = cur.execute(
                "UPDATE node_keys SET revoked_at = ? WHERE keyid = ? AND revoked_at IS NULL RETURNING node_id, site",
                (self._t(now), keyid),
            ).fetchone()
            if row is not None:
                self._event(cur, NodeEvent(row[0], "revoked", keyid, row[1], actor, now))
        return row is not None

    def node_events(self, node_id: str | None = None) -> list[NodeEvent]:
        sql, params = where_equal(f"SELECT {_EVENT_COLUMNS} FROM node_events", "node_id", node_id)
        with self._tx(False) as cur:
            rows = cur.execute(sql + " ORDER BY id", params).fetchall()
        return [NodeEvent(r[1], r[2], r[3], r[4], r[5], self._dt(r[6]), r[7], r[8], r[9], r[0]) for r in rows]  # type: ignore[arg-type]

    # --- helpers (inside a transaction) ------------------------------------------------------------------
    def _move_totals(self, cur: Any, node_id: str, old_site: str, new_site: str) -> None:
        """Current state follows a moved node: `collector.store.sqlcurrent`."""
        raise NotImplementedError

    def _claim_node(self, cur: Any, node_id: str, site: str, keyid: str, now: datetime) -> None:
        cur.execute(
            "INSERT INTO nodes (node_id, site, keyid, enrolled_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (node_id) DO NOTHING",
            (node_id, site, keyid, self._t(now)),
        )
        if cur.rowcount != 1:  # another request (maybe another collector) enrolled this node id just now
            raise NodeBoundError(f"node {node_id!r} is already enrolled with another key ({_REKEY_HINT})")

    def _insert_key(
        self, cur: Any, keyid: str, pem: str, node_id: str, site: str, token_hash: str, now: datetime
    ) -> None:
        cur.execute(
            "INSERT INTO node_keys (keyid, public_key_pem, node_id, site, token_hash, enrolled_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (keyid) DO NOTHING",
            (keyid, pem, node_id, site, token_hash, self._t(now)),
        )
        if cur.rowcount != 1:
            raise RecordExistsError(f"key {keyid} is already enrolled")  # rolls back everything, token included

    def _rebind(
        self,
        cur: Any,
        node_id: str,
        site: str,
        old_keyid: str,
        keyid: str,
        pem: str,
        token_hash: str,
        now: datetime,
        actor: str,
        reason: str,
    ) -> None:
        """Swap the node's key (compare-and-swap on the node row, which locks it), revoke every older key."""
        cur.execute(
            "UPDATE nodes SET keyid = ?, enrolled_at = ? WHERE node_id = ? AND keyid = ? AND site = ?",
            (keyid, self._t(now), node_id, old_keyid, site),
        )
        if cur.rowcount != 1:
            raise NodeBoundError(f"node {node_id!r} changed while it was being re-keyed; try again")
        cur.execute(
            "UPDATE node_keys SET revoked_at = ? WHERE node_id = ? AND revoked_at IS NULL", (self._t(now), node_id)
        )
        self._insert_key(cur, keyid, pem, node_id, site, token_hash, now)
        self._event(cur, NodeEvent(node_id, "rekeyed", keyid, site, actor, now, old_keyid, site, reason))

    def _event(self, cur: Any, e: NodeEvent) -> None:
        cur.execute(
            "INSERT INTO node_events (node_id, event, keyid, site, actor, created_at, old_keyid, old_site, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.node_id, e.event, e.keyid, e.site, e.actor, self._t(e.created_at), e.old_keyid, e.old_site, e.reason),
        )


def _enrolled_again(key: NodeKey, key_token: str, node_id: str, token_hash: str, token_usable: bool) -> NodeKey:
    """Enroll for a key that is enrolled already: the stored binding for a retry with the same token."""
    if key.node_id != node_id:
        raise NodeBoundError(
            f"key {key.keyid} is enrolled for another node, not {node_id!r}",
            hint="each node has its own key: generate one with gpucensus-agent keygen",
        )
    if key.revoked:
        raise NodeBoundError(
            f"key {key.keyid} of node {node_id!r} was revoked; a revoked key is never enrolled again",
            hint="generate a new key (gpucensus-agent keygen); " + _REKEY_HINT,
        )
    if key_token and key_token == token_hash:
        return key  # the agent's retry after a lost answer: the same binding, nothing written
    if not token_usable:
        raise TokenRejectedError("enrollment token is unknown, used up, revoked or expired")
    raise RecordExistsError(f"key {key.keyid} is already enrolled for node {node_id!r}")  # the token stays unused


def _takeover(node_id: str, node: Any, keyid: str, token_site: str, token_hash: str, now: datetime) -> Finding:
    """The record of a refused attempt to rebind an enrolled node id (once per node, key and token)."""
    return Finding(
        TAKEOVER_RULE,
        "violation",
        f"node:{node_id}",
        f"an enrollment with a token for site {token_site} ({token_actor(token_hash)}) tried to bind node "
        f"{node_id} to key {keyid}; the node stays bound to key {node[1]} at site {node[0]} (refused, the token "
        "was not used up)",
        keyid=keyid,
        sequence=0,
        created_at=now,
        digest=token_hash,
    )


def _refuse_enrolled_key(cur: Any, keyid: str) -> None:
    """RecordExistsError if `keyid` is already enrolled (for any node): a key is bound once."""
    owner = cur.execute("SELECT node_id FROM node_keys WHERE keyid = ?", (keyid,)).fetchone()
    if owner is not None:
        raise RecordExistsError(
            f"key {keyid} is already enrolled (node {owner[0]!r})",
            hint="a key is enrolled once: generate a new one with gpucensus-agent keygen",
        )
