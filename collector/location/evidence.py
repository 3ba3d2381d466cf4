"""Checking the signed measurements a statement carries: facts to re-verify, never figures to trust.

Each one must be a measurement envelope (`common.landmark_format`) signed by a registered landmark, for the key
that signed the statement, not older than `[location] max_age_seconds`, not dated in the future, and not one the
collector has seen before (a replay). A measurement that fails is left out, with a finding naming the reason;
the statement itself is judged as usual. Pure: landmarks, the digests already stored and the clock come in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from gpucensus.collector.ingest.model import VIOLATION, WARNING, Finding
from gpucensus.collector.location.records import Landmark
from gpucensus.common import landmark_format as fmt
from gpucensus.common.verify import public_key_from_pem

RULE = "location.evidence-rejected"
# what a node cannot do by accident (its agent checks the landmark's signature before it sends one) is a violation
SEVERITY = {"malformed": VIOLATION, "bad-signature": VIOLATION, "other-node": VIOLATION, "replayed": VIOLATION,
            "unknown-landmark": WARNING, "too-old": WARNING, "future": WARNING}  # fmt: skip


@dataclass(frozen=True)
class Accepted:
    measurement: fmt.Measurement
    landmark: Landmark
    envelope: bytes


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str
    message: str


def check_evidence(
    raw: Sequence[str],
    landmarks: Mapping[str, Landmark],  # by key id
    node_keyid: str,
    now: datetime,
    max_age: timedelta,
    max_future_skew: timedelta,
    seen: set[str],
) -> tuple[list[Accepted], list[Rejected]]:
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    digests = set(seen)
    for index, text in enumerate(raw):
        envelope = text.encode("utf-8")
        try:
            measured = fmt.verify_measurement(envelope, lambda keyid: _public(landmarks.get(keyid)))
            landmark = landmarks[measured.landmark]
            _judge(measured, landmark, node_keyid, now, max_age, max_future_skew, digests)
        except fmt.MeasurementError as err:
            rejected.append(Rejected(index, err.reason, err.message))
            continue
        digests.add(measured.digest)
        accepted.append(Accepted(measured, landmark, envelope))
    return accepted, rejected


def _public(landmark: Landmark | None) -> Ed25519PublicKey | None:
    return public_key_from_pem(landmark.public_key_pem.encode()) if landmark else None


def _judge(
    m: fmt.Measurement,
    landmark: Landmark,
    node_keyid: str,
    now: datetime,
    max_age: timedelta,
    skew: timedelta,
    digests: set[str],
) -> None:
    name = f"landmark {landmark.name}"
    if m.node_keyid != node_keyid:
        raise fmt.MeasurementError("other-node", f"{name} measured key {m.node_keyid[:16]}, not this node's key")
    if m.digest in digests:
        raise fmt.MeasurementError("replayed", f"the measurement by {name} of {_iso(m.time)} was delivered before")
    if m.time > now + skew:
        raise fmt.MeasurementError("future", f"{name} dated it {_iso(m.time)}, in the future")
    if m.time < now - max_age:
        age = int((now - m.time).total_seconds())
        raise fmt.MeasurementError(
            "too-old", f"{name} measured it {age} s ago, more than {int(max_age.total_seconds())} s"
        )


def findings(node_id: str, rejected: Sequence[Rejected]) -> tuple[Finding, ...]:
    return tuple(
        Finding(RULE, SEVERITY.get(r.reason, WARNING), f"node:{node_id}",
                f"node {node_id}: location_evidence[{r.index}] rejected ({r.reason}): {r.message}")
        for r in rejected
    )  # fmt: skip


def _iso(moment: datetime) -> str:
    return moment.strftime(fmt.TIME_FORMAT)
