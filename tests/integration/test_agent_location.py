"""The agent's side of location evidence against real landmark services on 127.0.0.1: it measures when due and
only then, hands each measurement to one statement, skips a landmark it cannot reach or whose key is not the
one the collector listed, and the [location] settings of both sides are checked."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpucensus.agent import config as agent_config
from gpucensus.agent.location import LandmarkInfo, LocationEvidence
from gpucensus.collector.config import load_config
from gpucensus.collector.location.landmark_server import Landmark, LandmarkServer
from gpucensus.common import landmark_format as fmt
from gpucensus.common.errors import ConfigError


def _pem(key: Ed25519PrivateKey) -> str:
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(name="landmarks")
def landmarks_fixture() -> Iterator[list[tuple[LandmarkServer, Ed25519PrivateKey]]]:
    running = []
    for _ in range(2):
        key = Ed25519PrivateKey.generate()
        server = LandmarkServer(Landmark(key), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        running.append((server, key))
    yield running
    for server, _ in running:
        server.shutdown()
        server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_measures_when_due_and_hands_each_measurement_over_once(landmarks) -> None:
    node = Ed25519PrivateKey.generate()
    listed = [LandmarkInfo(f"lm{i}", f"127.0.0.1:{s.port}", _pem(k)) for i, (s, k) in enumerate(landmarks)]
    asked: list[int] = []
    clock = Clock()

    def list_landmarks() -> list[LandmarkInfo]:
        asked.append(1)
        return listed

    evidence = LocationEvidence(node, list_landmarks, interval_seconds=3600, samples=3, clock=clock)
    first = evidence.for_statement()
    assert len(first) == 2 and len(asked) == 1
    for raw, (_, key) in zip(first, landmarks, strict=True):
        assert len(fmt.verify_measurement(raw.encode(), lambda _k, key=key: key.public_key()).samples_us) == 3
    clock.now += 60
    assert evidence.for_statement() == [] and len(asked) == 1  # not due: nothing measured, nothing repeated
    evidence.give_back(first)  # the statement they were for could not be signed
    assert evidence.for_statement() == first and evidence.for_statement() == []
    clock.now += 3600
    assert len(evidence.for_statement()) == 2 and len(asked) == 2


def test_unreachable_or_impostor_landmarks_are_skipped(landmarks) -> None:
    (good, good_key), (other, _) = landmarks
    closed = socket_port_nobody_listens_on()
    listed = [
        LandmarkInfo("down", f"127.0.0.1:{closed}", _pem(good_key)),
        LandmarkInfo("impostor", f"127.0.0.1:{other.port}", _pem(good_key)),  # answers with another key
        LandmarkInfo("bad-address", "nowhere", _pem(good_key)),
        LandmarkInfo("good", f"127.0.0.1:{good.port}", _pem(good_key)),
    ]
    evidence = LocationEvidence(Ed25519PrivateKey.generate(), lambda: listed, samples=1, timeout_seconds=2)
    (only,) = evidence.for_statement()
    assert fmt.verify_measurement(only.encode(), lambda _k: good_key.public_key()).min_rtt_us >= 0


def test_a_collector_that_cannot_list_landmarks_costs_the_statement_nothing() -> None:
    def fail() -> list[LandmarkInfo]:
        raise RuntimeError("UNAVAILABLE")

    assert LocationEvidence(Ed25519PrivateKey.generate(), fail).for_statement() == []


def socket_port_nobody_listens_on() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"location.samples": 17}, "location.samples must be 1..16"),
        ({"location.samples": 0}, "location.samples must be 1..16"),
        ({"location.interval_seconds": -1.0}, "location.interval_seconds must be >= 0"),
        ({"location.timeout_seconds": 0.0}, "location.timeout_seconds must be > 0"),
    ],
)
def test_agent_location_settings_are_checked(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        agent_config.load(None, env={}, overrides=overrides)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[location]\nfibre_speed_km_per_s = 400000\n", "must be 1..299792"),
        ("[location]\nborder_margin_km = -1\n", "border_margin_km must not be negative"),
        ("[location]\nspeed = 1\n", "unknown key 'speed'"),
        ("[location]\nmax_age_seconds = 1.5\n", "must be an integer"),
    ],
)
def test_collector_location_settings_are_checked(tmp_path, text: str, message: str) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\ndata_dir = "{tmp_path}"\n' + text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(config, env={})
