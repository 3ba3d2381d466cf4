"""Property: whatever sequence of enrollments (general or node-id tokens), re-keys, moves and revocations, the
store keeps the binding rule of issue 8 (finding 2), checked against a model after every step: a node id has at
most one unrevoked key, the node row names its latest key, only explicit actions change a node's key or site,
and every change is one node event. On a real SQLite file (one file, emptied after each example).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from gpucensus.collector.store import open_store
from gpucensus.collector.store.base import (
    EnrollmentToken,
    Entity,
    NodeBoundError,
    RecordExistsError,
    RecordNotFoundError,
    Site,
    Store,
    TokenRejectedError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SITES = ("s0", "s1")
_examples = itertools.count()
# Each step is several SQLite transactions: 60 examples keep `make test` within seconds; `make fuzz` runs its 20,000.
EXAMPLES = 60 if settings.default.max_examples <= 200 else settings.default.max_examples

NODES = st.sampled_from(("n0", "n1", "n2"))
KEYS = st.sampled_from(tuple(f"k{i}" for i in range(6)))
OPS = st.one_of(
    st.tuples(st.just("enroll"), NODES, KEYS, st.sampled_from(SITES), st.one_of(st.none(), NODES)),
    st.tuples(st.just("rekey"), NODES, KEYS),
    st.tuples(st.just("move"), NODES, st.sampled_from(SITES)),
    st.tuples(st.just("revoke"), KEYS),
    st.tuples(st.just("preregister"), NODES, KEYS, st.sampled_from(SITES)),
)


@dataclass
class Model:
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (site, keyid)
    keys: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # keyid -> (node, site, revoked)
    events: int = 0

    def bind(self, node: str, key: str, site: str) -> None:
        for other, (n, s, _) in self.keys.items():
            if n == node:
                self.keys[other] = (n, s, True)
        self.keys[key] = (node, site, False)
        self.nodes[node] = (site, key)
        self.events += 1


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = open_store("sqlite", data_dir=str(tmp_path_factory.mktemp("binding") / "data"))
    store._conn.execute("PRAGMA synchronous = OFF")  # type: ignore[attr-defined]  # speed: durability is not tested
    store.add_entity(Entity("acme", "US"))
    for site, country in zip(SITES, ("DE", "SG"), strict=True):
        store.add_site(Site(site, country, "acme"))
    yield store
    store.close()


def _apply(store: Store, model: Model, op: tuple, ns: str, step: int) -> None:
    now = T0 + timedelta(seconds=step)
    kind = op[0]
    if kind == "enroll":
        _, node, key, site, token_node = op
        token = EnrollmentToken(
            f"{ns}t{step}", site, T0, T0 + timedelta(days=1), node_id=ns + token_node if token_node else ""
        )
        if token_node in model.nodes and model.nodes[token_node][0] != site:
            with pytest.raises(NodeBoundError):
                store.add_token(token)
            return
        store.add_token(token)
        expected = _expected_enroll(model, node, key, site, token_node)
        if expected is None:
            bound = store.enroll(ns + key, "PEM", ns + node, "", token.token_hash, now)
            assert (bound.node_id, bound.site) == (ns + node, site)
            model.bind(node, key, site)
        else:
            with pytest.raises(expected):
                store.enroll(ns + key, "PEM", ns + node, "", token.token_hash, now)
    elif kind == "rekey":
        _, node, key = op
        expected = RecordNotFoundError if node not in model.nodes else RecordExistsError if key in model.keys else None
        if expected is None:
            store.rekey_node(ns + node, ns + key, "PEM", now, "operator:fuzz")
            model.bind(node, key, model.nodes[node][0])
        else:
            with pytest.raises(expected):
                store.rekey_node(ns + node, ns + key, "PEM", now, "operator:fuzz")
    elif kind == "move":
        _, node, site = op
        if node not in model.nodes:
            with pytest.raises(RecordNotFoundError):
                store.move_node(ns + node, site, now, "operator:fuzz")
            return
        moved = store.move_node(ns + node, site, now, "operator:fuzz")
        assert moved == (model.nodes[node][0] != site)
        if moved:
            model.nodes[node] = (site, model.nodes[node][1])
            for k, (n, s, revoked) in model.keys.items():
                model.keys[k] = (n, site if n == node and not revoked else s, revoked)
            model.events += 1
    elif kind == "preregister":  # `node enroll`: a NEW node id, no token
        _, node, key, site = op
        expected = RecordExistsError if key in model.keys else NodeBoundError if node in model.nodes else None
        if expected is None:
            store.preregister_node(ns + key, "PEM", ns + node, site, now, "operator:fuzz")
            model.bind(node, key, site)
        else:
            with pytest.raises(expected):
                store.preregister_node(ns + key, "PEM", ns + node, site, now, "operator:fuzz")
    else:
        _, key = op
        active = key in model.keys and not model.keys[key][2]
        assert store.revoke_key(ns + key, now, "operator:fuzz") is active
        if active:
            model.keys[key] = (*model.keys[key][:2], True)
            model.events += 1


def _expected_enroll(model: Model, node: str, key: str, site: str, token_node: str | None) -> type | None:
    """The error the store must raise for this enrollment, or None when it binds."""
    if key in model.keys:
        bound_node, _, revoked = model.keys[key]
        return NodeBoundError if bound_node != node or revoked else RecordExistsError
    if token_node is not None and token_node != node:
        return TokenRejectedError
    if node not in model.nodes:
        return None
    if token_node == node:
        return NodeBoundError if model.nodes[node][0] != site else None
    return NodeBoundError  # a general token never rebinds an enrolled node id


def _check(store: Store, model: Model, ns: str) -> None:
    keys = {
        k.keyid[len(ns) :]: (k.node_id[len(ns) :], k.site, k.revoked)
        for k in store.list_keys()
        if k.keyid.startswith(ns)
    }
    assert keys == model.keys
    nodes = {n.node_id[len(ns) :]: (n.site, n.keyid[len(ns) :]) for n in store.list_nodes() if n.node_id.startswith(ns)}
    assert nodes == model.nodes
    for node in model.nodes:
        assert len([k for k, (n, _, revoked) in keys.items() if n == node and not revoked]) <= 1
    assert len([e for e in store.node_events() if e.node_id.startswith(ns)]) == model.events


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES)
@given(st.lists(OPS, min_size=1, max_size=10))
def test_any_sequence_of_binding_actions_keeps_the_rule(store: Store, ops: list[tuple]) -> None:
    ns = f"e{next(_examples)}-"
    model = Model()
    try:
        for step, op in enumerate(ops):
            _apply(store, model, op, ns, step)
            _check(store, model, ns)
    finally:  # each example starts from an empty registry of nodes (and the checks stay O(example))
        with store._tx(True) as cur:  # type: ignore[attr-defined]
            for table in ("node_events", "findings", "node_keys", "nodes", "token_uses", "enrollment_tokens"):
                cur.execute(f"DELETE FROM {table}")
