"""Audit bundles built the way `gpucensus-collector export` builds them, from the pure modules: envelopes signed as
the agent signs them, a MemoryTree as the log, a checkpoint signed with a log key, proofs for that checkpoint, and
`collector.audit.bundle.write_bundle` for the layout. Tests then damage one thing and expect the auditor to see it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.agent.attest import sign_predicate
from gpucensus.collector.audit.bundle import write_bundle
from gpucensus.collector.policy.pack import pack_text
from gpucensus.common.dsse import envelope_digest
from gpucensus.common.merkle import MemoryTree
from gpucensus.common.note import Checkpoint, SignerKey
from gpucensus.common.verify import public_key_id

from tests.unit.attest_fixtures import predicate

ORIGIN = "log.example/gpucensus"
NODES = (("node-a", "fra1"), ("node-b", "fra1"), ("node-c", "waw1"))
REGISTRY = {
    "entities": [{"id": "acme", "headquarters": "US", "authorization": "none"}],
    "sites": [{"id": "fra1", "country": "DE", "entity": "acme"}, {"id": "waw1", "country": "PL", "entity": "acme"}],
}


@dataclass
class BuiltLog:
    log_key: SignerKey
    tree: MemoryTree
    leaves: list[bytes]
    node_keys: dict[str, Ed25519PrivateKey]

    def checkpoint(self, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        return Checkpoint(ORIGIN, size, self.tree.root(size)).sign([self.log_key])


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def node_predicate(node_id: str, site: str) -> dict[str, Any]:
    """The one-H100 literal predicate, its totals completed as the agent writes them (per-ECCN breakdown)."""
    result = predicate(id=node_id, site=site)
    result["totals"]["by_eccn"] = {"3A090.a": {"gpus": 1, "tpp": 15832}}
    return result


def build_log(rounds: int = 3, noise: int = 2) -> BuiltLog:
    """`rounds` attestations per node, interleaved, with `noise` unrelated leaves before each round."""
    log = BuiltLog(SignerKey.generate(ORIGIN), MemoryTree(), [], {n: Ed25519PrivateKey.generate() for n, _ in NODES})
    previous = dict.fromkeys(log.node_keys, "")
    for sequence in range(1, rounds + 1):
        for i in range(noise):
            log.leaves.append(f"another site's leaf {sequence}.{i}".encode())
        for node_id, site in NODES:
            envelope = sign_predicate(node_predicate(node_id, site), log.node_keys[node_id], sequence=sequence,
                                      previous=previous[node_id], timestamp="2026-11-23T12:00:00Z")  # fmt: skip
            previous[node_id] = envelope_digest(envelope)
            log.leaves.append(envelope)
    for leaf in log.leaves:
        log.tree.append(leaf)
    return log


def export(log: BuiltLog, out: Path, size: int | None = None) -> Path:
    """Every envelope of the log (not the noise leaves) with proofs against the checkpoint of `size`."""
    size = log.tree.size if size is None else size
    envelopes = {i: leaf for i, leaf in enumerate(log.leaves[:size]) if leaf.startswith(b"{")}
    keys = {public_key_id(k.public_key()): public_pem(k) for k in log.node_keys.values()}
    nodes = [{"node_id": n, "keyid": public_key_id(log.node_keys[n].public_key()), "site": s,
              "enrolled_at": "2026-11-23T11:00:00Z", "revoked_at": None} for n, s in NODES]  # fmt: skip
    write_bundle(
        out,
        checkpoint=log.checkpoint(size),
        vkey=str(log.log_key.verifier()),
        envelopes=envelopes,
        proofs={i: log.tree.inclusion_proof(i, size) for i in envelopes},
        tree_size=size,
        keys=keys,
        policies={"ai-diffusion-2025": pack_text("ai-diffusion-2025")[0].encode()},
        collector_version="0.0.0-test",
        registry={**REGISTRY, "nodes": nodes},
        selection={"site": None, "country": None, "since": None},
    )
    return out
