"""The fleet simulator: signed envelopes for N enrolled nodes, generated before any measuring and saved, so the
load generator only sends bytes.

Each node has its own Ed25519 key and chain (sequence, previous digest) and its own GPUs (UUIDs and serials
derived from the node id, so no two nodes share one and no duplicate-UUID or moved-GPU path is measured by
accident). The predicate comes from the agent's own code (mock backend -> `agent.snapshot.build_predicate`) and
is signed by `agent.attest.sign_predicate`, as a node does. A round either repeats the node's inventory (steady
state) or replaces one GPU (a changed inventory), chosen per round with probability `changed`. With
`full_every` (rounds), an unchanged round signs a compact statement naming the node's last full one, as the
agent does (`agent.compact`): a full inventory on the first round, on a change and every `full_every` rounds.
The nodes' hourly refreshes are staggered (node i's first one comes `full_every - phase(i)` rounds after its first
report), as in a fleet whose agents started at different times, rather than all falling on the same round.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import multiprocessing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

COUNTRIES = ("DE", "PL", "SG", "US", "IN", "AE", "FR", "JP")
_UUID_NAMESPACE = uuid.UUID("6f1c8a52-8a0e-4a8f-9f36-4c2b1f0c9d11")  # fixed: the same fleet every run


@dataclass(frozen=True)
class FleetSpec:
    nodes: int
    rounds: int
    changed: float  # probability that a round (after the first) replaces one GPU
    profile: str = "dgx-h100"
    sites: int = 8
    interval_seconds: int = 60
    full_every: int = 0  # rounds between full inventories when unchanged (0: every round is full)


@dataclass(frozen=True)
class FleetNode:
    node_id: str
    site: str
    country: str
    public_key_pem: str
    keyid: str
    envelopes: tuple[bytes, ...]


def site_of(index: int, sites: int) -> tuple[str, str]:
    """(site id, country) of node `index`: nodes spread round-robin over `sites` sites and the countries."""
    number = index % sites
    return f"site-{number:03d}", COUNTRIES[number % len(COUNTRIES)]


def gpu_identity(node_id: str, index: int, generation: int) -> tuple[str, str]:
    """(UUID, serial) of GPU slot `index` of `node_id` after `generation` replacements: unique per node."""
    name = f"{node_id}/{index}/{generation}"
    serial = str(int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)).zfill(13)[:13]
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, name)}", serial


def changes(node_id: str, rounds: int, changed: float) -> list[bool]:
    """Per round, whether it replaces a GPU: deterministic from the node id (the same fleet every run)."""
    out = []
    for number in range(rounds):
        digest = hashlib.sha256(f"{node_id}#{number}".encode()).digest()
        out.append(number > 0 and int.from_bytes(digest[:4], "big") / 2**32 < changed)
    return out


def node_predicate(base: dict[str, Any], node_id: str, generations: list[int]) -> dict[str, Any]:
    """`base` (one mock node's predicate) as node `node_id` with GPU slot i at replacement `generations[i]`."""
    predicate = copy.deepcopy(base)
    predicate["node"]["id"] = node_id
    predicate["node"]["hostname"] = f"host-{node_id}"
    for device in predicate["devices"]:
        device["uuid"], device["serial"] = gpu_identity(node_id, device["index"], generations[device["index"]])
    return predicate


def _node(args: tuple[FleetSpec, int, str]) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from gpucensus.agent.attest import sign_predicate
    from gpucensus.common.dsse import envelope_digest
    from gpucensus.common.statement import COMPACT_PREDICATE_TYPE, compact_predicate, format_timestamp
    from gpucensus.common.verify import public_key_id

    from tests.ingest_nodes import mock_predicate

    spec, index, start = args
    node_id = f"bench-{index:06d}"
    site, country = site_of(index, spec.sites)
    key = Ed25519PrivateKey.generate()
    base = mock_predicate(node_id, spec.profile)
    generations = [0] * len(base["devices"])
    first = datetime.fromisoformat(start) - timedelta(seconds=spec.interval_seconds * spec.rounds)
    envelopes, previous, last_full = [], "", (0, "")
    phase = index * 37 % spec.full_every if spec.full_every > 0 else 0  # 37: coprime to 60, phases spread
    for number, changed in enumerate(changes(node_id, spec.rounds, spec.changed)):
        if changed and generations:
            generations[number % len(generations)] += 1
        since_full = number - last_full[0] + 1 + (phase if last_full[0] == 1 else 0)
        full = changed or spec.full_every <= 0 or since_full >= spec.full_every or number == 0
        envelope = sign_predicate(
            node_predicate(base, node_id, generations) if full else compact_predicate(node_id, *last_full),
            key,
            sequence=number + 1,
            previous=previous,
            timestamp=format_timestamp(first + timedelta(seconds=spec.interval_seconds * number)),
            **({} if full else {"predicate_type": COMPACT_PREDICATE_TYPE}),
        )
        previous = envelope_digest(envelope)
        if full:
            last_full = (number + 1, previous)
        envelopes.append(base64.b64encode(envelope).decode())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"node_id": node_id, "site": site, "country": country, "public_key_pem": pem.decode(),
            "keyid": public_key_id(key.public_key()), "envelopes": envelopes}  # fmt: skip


def generate(spec: FleetSpec, path: Path, processes: int = 2) -> None:
    """Sign the fleet's envelopes (in `processes` processes) and save them as JSON lines at `path`."""
    start = datetime.now(UTC).isoformat()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        nodes = pool.map(_node, [(spec, i, start) for i in range(spec.nodes)], chunksize=4)
    with path.open("w") as out:
        out.write(json.dumps({"spec": spec.__dict__, "generated_at": start}) + "\n")
        for node in nodes:
            out.write(json.dumps(node) + "\n")


def load(path: Path) -> tuple[FleetSpec, list[FleetNode]]:
    with path.open() as lines:
        meta = json.loads(next(lines))
        nodes = [_fleet_node(json.loads(line)) for line in lines]
    return FleetSpec(**meta["spec"]), nodes


def _fleet_node(row: dict[str, Any]) -> FleetNode:
    envelopes = tuple(base64.b64decode(e) for e in row.pop("envelopes"))
    return FleetNode(**row, envelopes=envelopes)


def interleaved(nodes: list[FleetNode]) -> Iterator[bytes]:
    """Round 1 of every node, then round 2 of every node, ...: each chain in order, nodes mixed."""
    rounds = max((len(n.envelopes) for n in nodes), default=0)
    for number in range(rounds):
        for node in nodes:
            if number < len(node.envelopes):
                yield node.envelopes[number]
