"""The landmark timing service on a real socket, attacked: every broken or hostile peer gets an error (or is cut
off) and the service goes on measuring honest nodes. Plus the CLI as an operator runs it."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.agent.location import measure
from gpucensus.collector.location.landmark_server import Landmark, LandmarkServer
from gpucensus.common import landmark_format as fmt
from gpucensus.common import landmark_wire as wire
from gpucensus.common.verify import public_key_id

BIN = Path(sys.executable).parent
LANDMARK_KEY = Ed25519PrivateKey.generate()
NODE_KEY = Ed25519PrivateKey.generate()


def _running(max_connections: int) -> Iterator[LandmarkServer]:
    server = LandmarkServer(Landmark(LANDMARK_KEY, timeout_seconds=0.5), "127.0.0.1", 0, max_connections)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()  # waits for the connections in flight


@pytest.fixture(name="service")
def service_fixture() -> Iterator[LandmarkServer]:
    yield from _running(max_connections=8)


@pytest.fixture(name="small_service")
def small_service_fixture() -> Iterator[LandmarkServer]:
    yield from _running(max_connections=2)


def _raw_public(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _connect(service: LandmarkServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
    return sock


def _reply(sock: socket.socket) -> tuple[bytes, bytes]:
    try:
        return wire.read_frame(sock)
    except wire.WireError:
        return b"", b"closed"


def test_an_honest_node_gets_a_signed_measurement_of_its_own_key(service: LandmarkServer) -> None:
    envelope = measure(f"127.0.0.1:{service.port}", NODE_KEY, samples=7)
    m = fmt.verify_measurement(envelope, lambda _: LANDMARK_KEY.public_key())
    assert m.node_keyid == public_key_id(NODE_KEY.public_key())
    assert len(m.samples_us) == len(set(m.challenges)) == 7  # a fresh challenge per sample
    assert m.min_rtt_us == min(m.samples_us) > 0


HOSTILE_HELLOS = [
    (wire.HELLO, b"not json", "HELLO is not JSON"),
    (wire.HELLO, wire.hello(_raw_public(NODE_KEY), 0), "samples must be"),
    (wire.HELLO, wire.hello(_raw_public(NODE_KEY), 17), "samples must be"),
    (wire.HELLO, wire.hello("AAAA", 3), "public_key must be"),
    (wire.HELLO, b'{"public_key":"x","samples":1,"version":2}', "version 1"),
    (wire.ANSWER, b"x" * 64, "the first frame must be HELLO"),
]


@pytest.mark.parametrize(("kind", "body", "error"), HOSTILE_HELLOS)
def test_a_bad_opening_gets_an_error_and_the_service_goes_on(
    service: LandmarkServer, kind: bytes, body: bytes, error: str
) -> None:
    with _connect(service) as sock:
        wire.send_frame(sock, kind, body)
        assert _reply(sock)[0] == wire.ERROR
    with _connect(service) as sock:
        wire.send_frame(sock, kind, body)
        assert error in _reply(sock)[1].decode()
    assert measure(f"127.0.0.1:{service.port}", NODE_KEY, samples=1)


def test_an_answer_signed_with_another_key_is_refused(service: LandmarkServer) -> None:
    impostor = Ed25519PrivateKey.generate()
    with _connect(service) as sock:
        wire.send_frame(sock, wire.HELLO, wire.hello(_raw_public(NODE_KEY), 3))  # claims the node's key
        _, challenge = wire.read_frame(sock)
        wire.send_frame(sock, wire.ANSWER, fmt.answer(challenge, impostor))
        assert _reply(sock) == (wire.ERROR, b"answer 1 is not the node key's signature of the challenge")


def test_oversized_or_cut_frames_and_silence_are_cut_off(service: LandmarkServer) -> None:
    with _connect(service) as sock:
        sock.sendall((10**9).to_bytes(4, "big"))  # a frame claiming a gigabyte
        assert _reply(sock) == (b"", b"closed")
    with _connect(service) as sock:
        sock.sendall((50).to_bytes(4, "big") + b"H{")  # cut short, then silence: the read times out
        assert _reply(sock) == (b"", b"closed")
    with _connect(service) as sock:
        wire.send_frame(sock, wire.HELLO, wire.hello(_raw_public(NODE_KEY), 2))
        wire.read_frame(sock)  # a challenge, never answered
        assert _reply(sock) == (b"", b"closed")
    with _connect(service) as sock:  # trickling a byte at a time: each within the read timeout, never done
        sock.sendall((200).to_bytes(4, "big") + b"H")
        for _ in range(8):
            time.sleep(0.25)
            try:
                sock.sendall(b" ")
            except OSError:
                break
        assert _reply(sock) == (b"", b"closed")  # cut off at the deadline (3 x 0.5 s), not after 200 bytes
    assert measure(f"127.0.0.1:{service.port}", NODE_KEY, samples=1)


def test_beyond_its_connections_the_service_says_it_is_busy(small_service: LandmarkServer) -> None:
    holders = [_connect(small_service) for _ in range(2)]
    try:
        for sock in holders:  # each holds a slot: challenged, never answering (until its deadline)
            wire.send_frame(sock, wire.HELLO, wire.hello(_raw_public(NODE_KEY), 2))
            assert wire.read_frame(sock)[0] == wire.CHALLENGE
        with _connect(small_service) as third:
            assert b"busy" in _reply(third)[1]
    finally:
        for sock in holders:
            sock.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "gpucensus-collector"), *args], capture_output=True, text=True, timeout=60)


def test_operators_register_landmarks_and_locate_sites(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    Path(data).mkdir()
    key = tmp_path / "lm.key"
    assert _cli("landmark", "keygen", "--key", str(key)).returncode == 0
    assert _cli("landmark", "keygen", "--key", str(key)).returncode == 4  # never overwritten
    add = ["landmark", "add", "fra", "--lat", "50.11", "--lon", "8.68", "--public-key", f"{key}.pub"]
    done = _cli(*add, "--address", "lm1.example:7450", "--data-dir", data)
    assert done.returncode == 0, done.stderr
    listed = _cli("landmark", "list", "--format", "json", "--data-dir", data)
    assert '"name": "fra"' in listed.stdout and '"address": "lm1.example:7450"' in listed.stdout
    for bad, message in (
        (["--lat", "91", "--lon", "8", "--public-key", f"{key}.pub", "--address", "x:1"], "out of range"),
        (["--lat", "50", "--lon", "8", "--public-key", str(key), "--address", "x:1"], "not an Ed25519 public key"),
        (["--lat", "50", "--lon", "8", "--public-key", f"{key}.pub", "--address", "nowhere"], "must be HOST:PORT"),
        (["--lat", "50", "--lon", "8", "--public-key", f"{key}.pub", "--address", "x:1"], "already has that name"),
    ):
        failed = _cli("landmark", "add", "fra", *bad, "--data-dir", data)
        assert failed.returncode in (2, 4) and message in failed.stderr and "Traceback" not in failed.stderr
    assert _cli("entity", "add", "acme", "--headquarters", "US", "--data-dir", data).returncode == 0
    site = _cli("site", "add", "fra1", "--country", "DE", "--entity", "acme", "--lat", "50.1", "--data-dir", data)
    assert site.returncode == 2 and "--lat and --lon go together" in site.stderr
    assert _cli("site", "add", "fra1", "--country", "DE", "--entity", "acme", "--data-dir", data).returncode == 0
    located = _cli("site", "locate", "fra1", "--lat", "50.0979", "--lon", "8.6308", "--data-dir", data)
    assert located.returncode == 0 and "50.0979" in located.stdout
    assert _cli("site", "locate", "nowhere", "--lat", "1", "--lon", "1", "--data-dir", data).returncode != 0
    assert _cli("landmark", "remove", "fra", "--data-dir", data).returncode == 0
    assert _cli("landmark", "remove", "fra", "--data-dir", data).returncode != 0
    served = _cli("landmark", "serve", "--key", str(tmp_path / "missing.key"), "--listen", "127.0.0.1:0")
    assert served.returncode == 4 and "cannot read landmark key" in served.stderr
