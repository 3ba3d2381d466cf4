"""Location evidence end to end, on real sockets with real delay: four landmark services
(`gpucensus-collector landmark serve`, Frankfurt, Paris, Singapore, Ashburn) and nodes (`gpucensus-agent run`) as
separate processes on 127.0.0.1, with a delaying relay process (tests/delay_relay.py) in front of each landmark
adding the round trip light in fibre needs over the real distance from a node in Frankfurt, plus jitter. Real
distances, not scaled: the Singapore landmark's 5 samples take about half a second.

The collector runs in this process on a real SQLite file with the real clock. Rejected measurements (forged,
replayed, another node's, too old) are covered over real gRPC in test_location_ingest.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpucensus.agent.keys import generate_key
from gpucensus.collector.config import CollectorConfig, ServerConfig
from gpucensus.collector.location.bound import rtt_us_for
from gpucensus.collector.location.geometry import distance_m
from gpucensus.collector.location.landmark_keys import generate
from gpucensus.collector.location.records import IMPLAUSIBLE, IN_COUNTRY, UNPROVEN, Landmark, SiteLocation
from gpucensus.collector.registry import make_entity, make_site, new_token
from gpucensus.collector.server import run_server
from gpucensus.collector.store import open_store
from gpucensus.common.verify import public_key_id

from tests.location_fixtures import FRANKFURT_DC, PLACES, SINGAPORE_DC

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
JITTER_MS = 0.5
ADDED_MS = 40.0  # what the dishonest node adds to every round trip
# the injected round trip per landmark: light in fibre (2/3 c) from the node's real place in Frankfurt
HONEST_MS = {name: rtt_us_for(distance_m(FRANKFURT_DC, place)) / 1000 for name, place in PLACES.items()}


def _started(argv: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start a process that prints its port on its first line ("... listening on [HOST:]PORT")."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, cwd=ROOT)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"{argv[:3]} did not start: {line!r} {log.read_text()[-2000:]}")
    return proc, line.rsplit(":", 1)[-1].split()[-1].strip()


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path) -> Iterator[dict]:
    procs: list[subprocess.Popen] = []
    landmarks: dict[str, tuple[str, str]] = {}  # name -> (port, public key PEM)
    try:
        for name in PLACES:
            key_file = tmp_path / f"{name}.key"
            key = generate(key_file)
            proc, port = _started(
                [str(BIN / "gpucensus-collector"), "landmark", "serve", "--key", str(key_file),
                 "--listen", "127.0.0.1:0"], tmp_path / f"landmark-{name}.log",
            )  # fmt: skip
            procs.append(proc)
            landmarks[name] = (port, (tmp_path / f"{name}.key.pub").read_text(), public_key_id(key.public_key()))

        def relays(extra_ms: float) -> dict[str, str]:
            addresses = {}
            for i, (name, (port, _, _)) in enumerate(landmarks.items()):
                proc, relay_port = _started(
                    [sys.executable, "-m", "tests.delay_relay", "--target", f"127.0.0.1:{port}",
                     "--rtt-ms", f"{HONEST_MS[name] + extra_ms:.3f}", "--jitter-ms", str(JITTER_MS), "--seed", str(i)],
                    tmp_path / f"relay-{name}-{extra_ms:g}.log",
                )  # fmt: skip
                procs.append(proc)
                addresses[name] = f"127.0.0.1:{relay_port}"
            return addresses

        yield {"landmarks": landmarks, "relays": relays, "root": tmp_path}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _collector(root: Path, world: dict, addresses: dict[str, str]):
    store = open_store("sqlite", data_dir=str(root))
    store.add_entity(make_entity("acme", "US", "none"))
    now = datetime.now(UTC)
    for site, country, where in (("fra1", "DE", FRANKFURT_DC), ("sin1", "SG", SINGAPORE_DC)):
        store.add_site(make_site(site, country, "acme"))
        store.set_site_location(SiteLocation(site, where.lat, where.lon), now)
    for name, (_, pem, keyid) in world["landmarks"].items():
        place = PLACES[name]
        store.add_landmark(Landmark(name, keyid, pem, place.lat, place.lon, addresses[name], now))
    server, port = run_server(CollectorConfig(server=ServerConfig(listen="127.0.0.1:0")), store)
    return store, server, f"127.0.0.1:{port}"


def _agent(root: Path, store, collector: str, node: str, site: str) -> tuple[subprocess.Popen, str]:
    state = root / node
    state.mkdir()
    keyid = generate_key(state / "node.key").keyid
    token, record = new_token(site, datetime.now(UTC), timedelta(hours=1))
    store.add_token(record)
    config = state / "agent.toml"
    config.write_text(
        f'[collector]\naddress = "{collector}"\ntimeout_seconds = 10.0\n'
        f'[node]\nid = "{node}"\nsite = "{site}"\nstate_dir = "."\n[enrollment]\ntoken = "{token}"\n'
        '[inventory]\nbackend = "mock"\n[location]\ninterval_seconds = 3600.0\nsamples = 5\ntimeout_seconds = 10.0\n',
        encoding="utf-8",
    )
    argv = [str(BIN / "gpucensus-agent"), "run", "--config", str(config), "--rounds", "1"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=(state / "agent.log").open("w"), cwd=ROOT), keyid


def _run_agents(root: Path, store, collector: str, nodes: list[tuple[str, str]]) -> dict[str, str]:
    started = {node: _agent(root, store, collector, node, site) for node, site in nodes}
    for node, (proc, _) in started.items():
        assert proc.wait(timeout=60) == 0, (root / node / "agent.log").read_text()[-3000:]
    return {node: keyid for node, (_, keyid) in started.items()}


def _measured(store, node: str) -> dict[str, int]:
    with store._tx(False) as cur:
        rows = cur.execute("SELECT landmark, min_rtt_us FROM location_measurements WHERE node_id = ?", (node,))
        return dict(rows.fetchall())


def _location_findings(store, node: str) -> dict[str, str]:
    return {
        f.rule_id: f.message for f in store.list_findings() if f.rule_id.startswith("location.") and node in f.subject
    }


def test_honest_node_passes_and_the_same_node_claiming_singapore_is_implausible(world: dict) -> None:
    started = time.monotonic()
    store, server, address = _collector(world["root"] / "honest", world, world["relays"](0.0))
    try:
        _run_agents(world["root"], store, address, [("gpu-fra", "fra1"), ("gpu-sin", "sin1")])
        for node in ("gpu-fra", "gpu-sin"):
            measured = _measured(store, node)
            assert set(measured) == set(PLACES), measured
            for name, rtt_us in measured.items():  # the relay's delay is in every sample: never faster
                assert rtt_us >= HONEST_MS[name] * 1000, (name, rtt_us, HONEST_MS[name])
        locations = store.node_locations()
        assert locations["gpu-fra"].status in (IN_COUNTRY, UNPROVEN), locations["gpu-fra"].message
        assert "location.implausible" not in _location_findings(store, "gpu-fra")
        assert locations["gpu-sin"].status == IMPLAUSIBLE
        assert "landmark fra measured a round trip of" in _location_findings(store, "gpu-sin")["location.implausible"]
    finally:
        server.stop(None).wait()
        store.close()
    assert time.monotonic() - started < 60


def test_a_node_adding_delay_stays_unproven(world: dict) -> None:
    store, server, address = _collector(world["root"] / "delayed", world, world["relays"](ADDED_MS))
    try:
        _run_agents(world["root"], store, address, [("gpu-slow", "fra1")])
        measured = _measured(store, "gpu-slow")
        assert all(rtt >= (HONEST_MS[name] + ADDED_MS) * 1000 for name, rtt in measured.items()), measured
        location = store.node_locations()["gpu-slow"]
        assert location.status == UNPROVEN, location.message
        assert "reaches beyond DE" in _location_findings(store, "gpu-slow")["location.country-unproven"]
    finally:
        server.stop(None).wait()
        store.close()
