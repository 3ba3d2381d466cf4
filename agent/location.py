"""The agent's side of location evidence: answer landmarks' challenges, keep the signed measurements for the next
statement (`predicate.location_evidence`).

Every `[location] interval_seconds` (not every report: a landmark's time is shared by many nodes), the agent asks
the collector for its landmarks (`ListLandmarks`), opens one measurement with each and answers each challenge at
once with its node key. What comes back is the landmark's signed measurement; the agent checks the signature
against the landmark key the collector listed and carries the bytes unchanged: the collector re-verifies them
and never trusts the agent's copy. A landmark that cannot be reached is logged and skipped; the round goes on.
"""

from __future__ import annotations

import base64
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.common import landmark_format as fmt
from gpucensus.common import landmark_wire as wire
from gpucensus.common.verify import public_key_from_pem

log = logging.getLogger("gpucensus.agent.location")

MAX_EVIDENCE = 32  # measurements carried in one statement (the collector refuses more)


@dataclass(frozen=True)
class LandmarkInfo:
    name: str
    address: str  # host:port
    public_key_pem: str


class MeasurementFailed(Exception):
    """The landmark refused, broke the protocol, or could not be reached."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise MeasurementFailed(f"landmark address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def measure(address: str, node_key: Ed25519PrivateKey, samples: int = 5, timeout_seconds: float = 10.0) -> bytes:
    """One measurement with the landmark at `address`: its signed envelope bytes (not yet verified)."""
    raw = node_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        with wire.quick(socket.create_connection(_split(address), timeout=timeout_seconds)) as sock:
            wire.send_frame(sock, wire.HELLO, wire.hello(base64.b64encode(raw).decode("ascii"), samples))
            while True:
                kind, body = wire.read_frame(sock)
                if kind == wire.CHALLENGE and len(body) == fmt.CHALLENGE_BYTES:
                    wire.send_frame(sock, wire.ANSWER, fmt.answer(body, node_key))
                elif kind == wire.MEASUREMENT:
                    return body
                elif kind == wire.ERROR:
                    raise MeasurementFailed(f"the landmark refused: {body.decode('utf-8', 'replace')[:200]}")
                else:
                    raise MeasurementFailed(f"unexpected frame {kind!r} from the landmark")
    except (OSError, wire.WireError) as err:
        raise MeasurementFailed(f"landmark {address}: {err or type(err).__name__}") from err


class LocationEvidence:
    """Measures when due and hands the measurements to the next statement, once."""

    def __init__(
        self,
        node_key: Ed25519PrivateKey,
        landmarks: Callable[[], Sequence[LandmarkInfo]],
        *,
        interval_seconds: float = 3600.0,
        samples: int = 5,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key, self._landmarks = node_key, landmarks
        self.interval_seconds, self.samples, self.timeout_seconds = interval_seconds, samples, timeout_seconds
        self._clock = clock
        self._next = clock()  # the first statement carries evidence
        self._pending: list[str] = []

    def for_statement(self) -> list[str]:
        """The measurements for the statement being built (measuring first when due); each is given once."""
        if self._clock() >= self._next:
            self._next = self._clock() + self.interval_seconds
            try:
                self._pending = self._measure_all()
            except Exception as err:  # the collector unreachable: no evidence this round, the statement goes on
                log.warning("location measurement skipped: %s", err)
        taken, self._pending = self._pending, []
        return taken

    def give_back(self, evidence: list[str]) -> None:
        """The statement they were for was not signed: they go into the next one (if still fresh there)."""
        self._pending = [*evidence, *self._pending][:MAX_EVIDENCE]

    def _measure_all(self) -> list[str]:
        found: list[str] = []
        for landmark in list(self._landmarks())[:MAX_EVIDENCE]:
            try:
                envelope = measure(landmark.address, self._key, self.samples, self.timeout_seconds)
                listed = public_key_from_pem(landmark.public_key_pem.encode())
                measured = fmt.verify_measurement(envelope, lambda _keyid, key=listed: key)
            except (MeasurementFailed, fmt.MeasurementError, ValueError) as err:
                log.warning("landmark %s: %s", landmark.name, err)
                continue
            log.info("landmark %s: min round trip %d us", landmark.name, measured.min_rtt_us)
            found.append(envelope.decode("ascii"))
        return found
