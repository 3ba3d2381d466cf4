"""Landmarks at real places with their own keys, and measurements they sign, for the location tests.

`rtt_from(node_at, landmark)` is the round trip light in fibre needs (2/3 c) over the real geodesic distance, so
the scenarios use real-world figures: Frankfurt-Singapore about 103 ms, Frankfurt-Ashburn about 66 ms.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.collector.location.bound import rtt_us_for
from gpucensus.collector.location.geometry import Point, distance_m
from gpucensus.collector.location.records import Landmark
from gpucensus.common import landmark_format as fmt
from gpucensus.common.verify import public_key_id

ADDED = datetime(2026, 11, 1, tzinfo=UTC)
PLACES = {
    "fra": Point(50.1109, 8.6821),  # Frankfurt
    "par": Point(48.8566, 2.3522),  # Paris
    "sin": Point(1.3521, 103.8198),  # Singapore
    "iad": Point(39.0438, -77.4874),  # Ashburn, Virginia
}
FRANKFURT_DC = Point(50.0979, 8.6308)  # a data centre in Frankfurt (site fra1, DE)
SINGAPORE_DC = Point(1.3006, 103.7848)  # one in Singapore (site sin1, SG)


class TestLandmark:
    __test__ = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.place = PLACES[name]
        self.key = Ed25519PrivateKey.generate()
        self.keyid = public_key_id(self.key.public_key())

    @property
    def public_key_pem(self) -> str:
        public = self.key.public_key()
        return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def record(self, address: str = "127.0.0.1:1") -> Landmark:
        return Landmark(self.name, self.keyid, self.public_key_pem, self.place.lat, self.place.lon, address, ADDED)

    def measure(self, node_keyid: str, rtt_us: int, at: datetime, samples: int = 3) -> str:
        """A measurement this landmark signs (as its server would), as the predicate carries it."""
        rtts = [rtt_us + 40 * i for i in range(samples)]
        challenges = [bytes([i]) * fmt.CHALLENGE_BYTES for i in range(samples)]
        return fmt.sign_measurement(self.key, node_keyid, challenges, rtts, at).decode()


def rtt_from(node_at: Point, landmark: TestLandmark, extra_us: int = 300) -> int:
    """The round trip from `node_at`: light in fibre over the real distance, plus `extra_us` of overhead."""
    return round(rtt_us_for(distance_m(node_at, landmark.place))) + extra_us


def landmarks() -> dict[str, TestLandmark]:
    return {name: TestLandmark(name) for name in PLACES}
