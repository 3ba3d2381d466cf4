"""Shared literals for the attestation tests: a small predicate as the snapshot builds it, keys, a clock."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.agent.attest import sign_predicate
from gpucensus.common.dsse import envelope_digest

_PREDICATE: dict[str, Any] = {
    "node": {"id": "node-a", "hostname": "gpu-a", "site": "fra1", "boot_id": "b00t", "agent_version": "0.1.0"},
    "driver": {"version": "550.54.15", "nvml_version": "12.550.54.15", "library_path": "/x/libnvidia-ml.so.1",
               "backend": "mock"},
    "devices": [{"index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB HBM3", "status": "ok", "error": "",
                 "not_reported": [], "pci": {"bus_id": "00000000:18:00.0", "device_id": "0x2330"},
                 "model": "h100-sxm5", "basis": "catalogue", "tpp": 15832, "die_area_mm2": "814",
                 "pd_milli": 19450, "eccn": "3A090.a", "h100e_milli": 1000}],
    "pci_functions": [{"bus_id": "0000:18:00.0", "device_id": "0x2330", "class": "0x0302", "nvml_index": 0,
                       "status": "matched"}],
    "totals": {"gpus": 1, "tpp": 15832, "h100e_milli": 1000, "unaccounted": 0},
}  # fmt: skip

FIXED_TIME = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def predicate(**node: str) -> dict[str, Any]:
    """A fresh copy of the literal predicate, node fields overridden by keyword."""
    result = copy.deepcopy(_PREDICATE)
    result["node"].update(node)
    return result


def fixed_clock() -> datetime:
    return FIXED_TIME


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def signed_chain(key: Ed25519PrivateKey, count: int, first: int = 1, previous: str = "") -> list[bytes]:
    """`count` envelopes with sequences first.. linked by `previous`, as the agent signs them."""
    envelopes = []
    for sequence in range(first, first + count):
        envelope = sign_predicate(
            predicate(), key, sequence=sequence, previous=previous, timestamp="2026-11-23T12:00:00Z"
        )
        envelopes.append(envelope)
        previous = envelope_digest(envelope)
    return envelopes
