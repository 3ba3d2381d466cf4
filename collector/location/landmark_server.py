"""A landmark: a small TCP service at a known place that times challenge-answer round trips with nodes and signs
what it measured (protocol: `common.landmark_wire`; signed format: `common.landmark_format`).

The clock runs on the landmark, from sending a challenge until the node's signed answer has arrived, so a node
can make itself look farther away (answer late) but never closer. Each connection is judged alone: a bad frame,
a wrong signature, a silent or slow peer gets an ERROR frame (when possible) and the connection closes; the
service goes on. At most `max_connections` are served at once; more are told so and closed.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from gpucensus.common import jcs
from gpucensus.common import landmark_format as fmt
from gpucensus.common import landmark_wire as wire
from gpucensus.common.verify import public_key_id

log = logging.getLogger("gpucensus.landmark")

MAX_HELLO = 1024
DEADLINE_TIMEOUTS = 3  # a whole measurement (16 samples at 300 ms from the far side of the Earth: 5 s) must fit
_HELLO_FIELDS = {"public_key", "samples", "version"}


class RefusedError(Exception):
    """The node broke the protocol; the message is sent back to it."""


def _node_key(body: bytes) -> tuple[Ed25519PublicKey, int]:
    try:
        doc = jcs.loads_strict(body)
    except (jcs.CanonicalJsonError, ValueError) as err:
        raise RefusedError(f"HELLO is not JSON: {err}") from err
    if not isinstance(doc, dict) or set(doc) != _HELLO_FIELDS or doc["version"] != wire.VERSION:
        raise RefusedError(f"HELLO must be exactly {sorted(_HELLO_FIELDS)} with version {wire.VERSION}")
    samples = doc["samples"]
    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= fmt.MAX_SAMPLES:
        raise RefusedError(f"samples must be 1..{fmt.MAX_SAMPLES}")
    try:
        raw = base64.b64decode(str(doc["public_key"]), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw), samples
    except ValueError as err:
        raise RefusedError("public_key must be a base64 raw 32-byte Ed25519 public key") from err


class Landmark:
    """One landmark's measuring logic over a connected socket (the server gives it connections)."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_seconds: float = 5.0,
    ) -> None:
        self.key = key
        self.keyid = public_key_id(key.public_key())
        self.clock = clock
        self.timeout_seconds = timeout_seconds

    def serve(self, sock: socket.socket) -> None:
        """One measurement, within `DEADLINE_TIMEOUTS` x `timeout_seconds` in all (a slow peer is cut off)."""
        wire.quick(sock).settimeout(self.timeout_seconds)
        deadline = time.monotonic() + DEADLINE_TIMEOUTS * self.timeout_seconds
        try:
            kind, body = wire.read_frame(sock, MAX_HELLO, deadline)
            if kind != wire.HELLO:
                raise RefusedError("the first frame must be HELLO")
            node_public, samples = _node_key(body)
            envelope = self._measure(sock, node_public, samples, deadline)
            wire.send_frame(sock, wire.MEASUREMENT, envelope)
        except RefusedError as err:
            log.warning("measurement refused: %s", err)
            _try_send(sock, str(err))
        except (OSError, wire.WireError) as err:
            log.warning("measurement abandoned: %s", err or type(err).__name__)

    def _measure(self, sock: socket.socket, node_public: Ed25519PublicKey, samples: int, deadline: float) -> bytes:
        challenges: list[bytes] = []
        rtts: list[int] = []
        for number in range(samples):
            challenge = os.urandom(fmt.CHALLENGE_BYTES)
            frame = wire.CHALLENGE + challenge
            header = len(frame).to_bytes(4, "big")
            start = time.perf_counter_ns()
            sock.sendall(header + frame)
            kind, signature = wire.read_frame(sock, 128, deadline)
            stop = time.perf_counter_ns()
            if kind != wire.ANSWER or not fmt.answer_valid(challenge, signature, node_public):
                raise RefusedError(f"answer {number + 1} is not the node key's signature of the challenge")
            challenges.append(challenge)
            rtts.append((stop - start) // 1000)
        keyid = public_key_id(node_public)
        log.info("measured node key %s: min %d us over %d samples", keyid[:16], min(rtts), samples)
        return fmt.sign_measurement(self.key, keyid, challenges, rtts, self.clock())


def _try_send(sock: socket.socket, message: str) -> None:
    try:
        wire.send_frame(sock, wire.ERROR, message.encode("utf-8")[:1024])
    except OSError:
        pass


class LandmarkServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server for one `Landmark`; `port` is the bound port (listen on port 0 in tests)."""

    daemon_threads = False  # server_close() waits for measurements in flight (each bounded by its deadline)
    allow_reuse_address = True

    def __init__(self, landmark: Landmark, host: str, port: int, max_connections: int = 64) -> None:
        self.landmark = landmark
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((host, port), _Handler)
        self.port = self.server_address[1]


class _Handler(socketserver.BaseRequestHandler):
    server: LandmarkServer

    def handle(self) -> None:
        if not self.server._slots.acquire(blocking=False):
            _try_send(self.request, "the landmark is busy; try again later")
            return
        try:
            self.server.landmark.serve(self.request)
        finally:
            self.server._slots.release()
