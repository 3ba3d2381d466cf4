"""The ingest pipeline's domain: findings (the store's `Finding`) and the result an ack is made from."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpucensus.collector.store.base import Finding

__all__ = ["ACCEPTED", "INFO", "REJECTED", "SEVERITIES", "VIOLATION", "WARNING", "Finding", "IngestResult"]

INFO = "info"
WARNING = "warning"
VIOLATION = "violation"
SEVERITIES = (INFO, WARNING, VIOLATION)

ACCEPTED = "accepted"
REJECTED = "rejected"


@dataclass(frozen=True)
class IngestResult:
    """What the collector answers to one envelope (the domain side of an `Ack`)."""

    keyid: str
    sequence: int
    status: str  # ACCEPTED or REJECTED
    log_index: int | None = None  # set exactly when ACCEPTED
    duplicate: bool = False
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    checkpoint: bytes = b""
    # the open policy findings of the attestation's site, its country and entity (continuous compliance): sent
    # in the Ack after `findings`, not stored with the attestation (the compliance state records them)
    policy: tuple[Finding, ...] = field(default_factory=tuple)
