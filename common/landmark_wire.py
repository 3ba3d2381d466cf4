"""The landmark timing protocol on the wire: length-prefixed frames over one TCP connection.

Raw TCP with TCP_NODELAY rather than gRPC: a round trip is one 37-byte frame out and one 69-byte frame back, with
no HTTP/2 framing, flow-control windows or thread hand-offs in between that would add jitter to what is timed
(tests/bench/bench_location.py measures both). Every extra microsecond only makes a node look farther away,
never closer, so the choice is about precision, not safety.

    node -> landmark   HELLO     frame(b"H" + JCS {"public_key": "<base64 raw Ed25519>", "samples": k,
                                                   "version": 1})
    landmark -> node   CHALLENGE frame(b"C" + 32 random bytes)           } k times; the landmark's clock runs
    node -> landmark   ANSWER    frame(b"A" + 64-byte Ed25519 signature) } from sending C to receiving A
    landmark -> node   RESULT    frame(b"M" + measurement envelope)   or   frame(b"E" + UTF-8 reason)

A frame is a 4-byte big-endian length and that many bytes, at most `MAX_FRAME`. Pure helpers over a socket.
"""

from __future__ import annotations

import socket
import struct
import time

from gpucensus.common import jcs

VERSION = 1
MAX_FRAME = 16 * 1024
HELLO, CHALLENGE, ANSWER, MEASUREMENT, ERROR = b"H", b"C", b"A", b"M", b"E"
_LENGTH = struct.Struct(">I")


class WireError(Exception):
    """The peer broke the protocol or the connection ended early."""


def send_frame(sock: socket.socket, kind: bytes, body: bytes) -> None:
    data = kind + body
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WireError("the peer is too slow: the measurement's time is up")
            sock.settimeout(remaining)
        chunk = sock.recv(left)
        if not chunk:
            raise WireError("the connection closed in the middle of a frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket, max_bytes: int = MAX_FRAME, deadline: float | None = None) -> tuple[bytes, bytes]:
    """(kind, body) of the next frame; WireError if it is empty, too large, cut short or (with a `deadline`, in
    `time.monotonic()` seconds) not complete by then: a peer trickling bytes cannot hold a connection open."""
    (length,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size, deadline))
    if not 1 <= length <= max_bytes:
        raise WireError(f"a frame of {length} bytes (1..{max_bytes} allowed)")
    data = _exactly(sock, length, deadline)
    return data[:1], data[1:]


def hello(public_key_b64: str, samples: int) -> bytes:
    return jcs.canonical_bytes({"public_key": public_key_b64, "samples": samples, "version": VERSION})


def quick(sock: socket.socket) -> socket.socket:
    """Send small frames at once (no Nagle delay): each one is a timed message."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
