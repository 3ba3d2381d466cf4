"""Test nodes for the ingest and server tests: a mock-profile node with its own key that signs a chain of
envelopes exactly as the agent does (agent.snapshot -> agent.attest), with knobs to break the chain."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.agent.attest import sign_predicate
from gpucensus.agent.backends.mock import MockBackend
from gpucensus.agent.host import NodeInfo
from gpucensus.agent.snapshot import build_predicate
from gpucensus.collector.store.base import Entity, NodeKey, Site, Store
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.dsse import envelope_digest
from gpucensus.common.statement import COMPACT_PREDICATE_TYPE, PREDICATE_TYPE, compact_predicate, format_timestamp
from gpucensus.common.verify import public_key_id

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def mock_predicate(node_id: str, profile: str = "dgx-h100", site: str = "") -> dict[str, Any]:
    backend = MockBackend(profile)
    return build_predicate(
        NodeInfo(id=node_id, hostname=f"host-{node_id}", site=site, boot_id="boot-1"),
        "mock",
        backend.discover(),
        backend.pci_functions(),
        load_catalogue(),
        load_rules(),
    )


class TestNode:
    """One node: key, predicate and chain state (next sequence, previous digest)."""

    __test__ = False  # not a pytest class

    def __init__(self, node_id: str, profile: str = "dgx-h100", clock: Callable[[], datetime] = lambda: NOW) -> None:
        self.node_id = node_id
        self.key = Ed25519PrivateKey.generate()
        self.keyid = public_key_id(self.key.public_key())
        self.predicate = mock_predicate(node_id, profile)
        self.clock = clock
        self.sequence = 1
        self.previous = ""
        self.last_full: tuple[int, str] | None = None

    @property
    def public_key_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(
        self,
        *,
        sequence: int | None = None,
        previous: str | None = None,
        ahead: timedelta = timedelta(0),
        predicate: dict[str, Any] | None = None,
        compact: tuple[int, str] | None = None,
    ) -> bytes:
        """Sign without advancing the chain (an equivocation, a replayed sequence, a custom predicate); with
        `compact` (sequence, digest of a full envelope), a compact statement naming it."""
        if compact is not None:
            predicate = predicate if predicate is not None else compact_predicate(self.node_id, *compact)
        return sign_predicate(
            predicate if predicate is not None else self.predicate,
            self.key,
            sequence=self.sequence if sequence is None else sequence,
            previous=self.previous if previous is None else previous,
            timestamp=format_timestamp(self.clock() + ahead),
            predicate_type=PREDICATE_TYPE if compact is None else COMPACT_PREDICATE_TYPE,
        )

    def next(self, **kwargs: Any) -> bytes:
        """The next envelope of the chain; advances sequence and previous."""
        envelope = self.sign(**kwargs)
        self.sequence += 1
        self.previous = envelope_digest(envelope)
        return envelope

    def full(self, **kwargs: Any) -> bytes:
        """The next envelope, a full inventory; remembered as the one `compact()` names."""
        envelope = self.next(**kwargs)
        self.last_full = (self.sequence - 1, envelope_digest(envelope))
        return envelope

    def compact(self, named: tuple[int, str] | None = None, **kwargs: Any) -> bytes:
        """The next envelope, a compact statement naming `named` (default: the last `full()` one)."""
        return self.next(compact=named or self.last_full, **kwargs)

    def edited(self, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        predicate = copy.deepcopy(self.predicate)
        edit(predicate)
        return predicate


def register(store: Store, site: str = "fra1", country: str = "DE", entity: str = "acme") -> None:
    if store.get_entity(entity) is None:
        store.add_entity(Entity(entity, "US"))
    if store.get_site(site) is None:
        store.add_site(Site(site, country, entity))


def enroll(store: Store, node: TestNode, site: str = "fra1", country: str = "DE") -> NodeKey:
    """Register the site (if new), create a token and enroll the node's key with it (no gRPC)."""
    from gpucensus.collector.registry import new_token

    register(store, site, country)
    _token, record = new_token(site, NOW, timedelta(hours=1))
    store.add_token(record)
    return store.enroll(node.keyid, node.public_key_pem, node.node_id, "", record.token_hash, NOW)
