"""Location benchmark (not part of the test suite; `make bench`).

1. Protocol timing overhead on loopback: a landmark service in its own process (`gpucensus-collector landmark
   serve`), the agent's client measuring it `--measurements` times with 5 samples each. Every sample is a round
   trip with no distance at all, so it is pure overhead (network stacks, framing, the node's Ed25519 signature,
   scheduling): median and p99 in microseconds, and the distance that overhead adds to a bound at 2/3 c.
2. The transport choice: the same 32-byte-out, 64-byte-back exchange timed from the client over raw framed TCP
   and over a gRPC unary call (both servers in one child process), median and p99.
3. False positives over `--runs` honest runs with jitter: a SIMULATION over the collector's verification
   function (`collector.location.assess`), not 1,000 network runs: each run is an honest node at one of four real
   data-centre sites, k = 5 samples per landmark, each sample = light in fibre over the real distance
   x (1 + route inflation, uniform 0..50 %) + an overhead drawn from the distribution measured in (1) + jitter
   (exponential, mean 0.5 ms). A false positive is `location.implausible` for an honest node; `unproven` (the
   region reaches beyond the country) is counted too, since it is a warning an honest operator sees.

    python tests/bench/bench_location.py [--measurements 400] [--runs 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script by `make bench`
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from gpucensus.agent.location import measure  # noqa: E402
from gpucensus.collector.location.assess import Settings, assess  # noqa: E402
from gpucensus.collector.location.bound import DEFAULT_FIBRE_SPEED_KM_PER_S, rtt_us_for  # noqa: E402
from gpucensus.collector.location.evidence import Accepted  # noqa: E402
from gpucensus.collector.location.geometry import Point, distance_m  # noqa: E402
from gpucensus.collector.location.landmark_keys import generate  # noqa: E402
from gpucensus.collector.location.records import IMPLAUSIBLE, IN_COUNTRY, SiteLocation  # noqa: E402
from gpucensus.common import landmark_format as fmt  # noqa: E402
from gpucensus.common import landmark_wire as wire  # noqa: E402

from tests.location_fixtures import FRANKFURT_DC, SINGAPORE_DC, TestLandmark  # noqa: E402

SITES = {  # honest nodes: site id -> (country, place)
    "fra1": ("DE", FRANKFURT_DC),
    "sin1": ("SG", SINGAPORE_DC),
    "par1": ("FR", Point(48.9244, 2.3573)),  # Saint-Denis
    "iad1": ("US", Point(39.0168, -77.4592)),  # Ashburn
}
ECHO = "/bench.Echo/Call"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def protocol_overhead(measurements: int) -> list[int]:
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "lm.key"
        generate(key_file)
        argv = [str(Path(sys.executable).parent / "gpucensus-collector"), "landmark", "serve", "--key",
                str(key_file), "--listen", "127.0.0.1:0", "--log-level", "warning"]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            port = proc.stdout.readline().rsplit(":", 1)[-1].strip()  # type: ignore[union-attr]
            node = Ed25519PrivateKey.generate()
            samples: list[int] = []
            for _ in range(measurements):
                envelope = measure(f"127.0.0.1:{port}", node, samples=5)
                samples.extend(json.loads(fmt.dsse.b64decode(json.loads(envelope)["payload"]))["samples_us"])
            return samples
        finally:
            proc.kill()
            proc.wait()


def serve_echo() -> None:
    """Child process: a framed TCP echo and a gRPC unary echo; prints both ports."""
    listener = socket.create_server(("127.0.0.1", 0))

    def tcp() -> None:
        while True:
            conn, _ = listener.accept()
            wire.quick(conn)
            threading.Thread(target=lambda c=conn: _echo_tcp(c), daemon=True).start()

    threading.Thread(target=tcp, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: req * 2)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Call": handler}),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(listener.getsockname()[1], grpc_port, flush=True)
    server.wait_for_termination()


def _echo_tcp(conn: socket.socket) -> None:
    try:
        while True:
            _, body = wire.read_frame(conn)
            wire.send_frame(conn, wire.ANSWER, body * 2)
    except (OSError, wire.WireError):
        conn.close()


def transports(rounds: int) -> dict[str, list[float]]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-echo"], stdout=subprocess.PIPE, text=True)
    try:
        tcp_port, grpc_port = proc.stdout.readline().split()  # type: ignore[union-attr]
        challenge = bytes(32)
        times: dict[str, list[float]] = {"tcp": [], "grpc": []}
        with wire.quick(socket.create_connection(("127.0.0.1", int(tcp_port)))) as sock:
            for _ in range(rounds):
                start = time.perf_counter_ns()
                wire.send_frame(sock, wire.CHALLENGE, challenge)
                wire.read_frame(sock)
                times["tcp"].append((time.perf_counter_ns() - start) / 1000)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(ECHO)
            call(challenge, timeout=5)
            for _ in range(rounds):
                start = time.perf_counter_ns()
                call(challenge, timeout=5)
                times["grpc"].append((time.perf_counter_ns() - start) / 1000)
        return times
    finally:
        proc.kill()
        proc.wait()


def false_positives(runs: int, overheads: list[int], seed: int = 12) -> dict[str, dict[str, int]]:
    rng = random.Random(seed)
    landmarks = [TestLandmark(name) for name in ("fra", "par", "sin", "iad")]
    records = {lm.name: lm.record() for lm in landmarks}
    settings = Settings()
    at = datetime(2026, 11, 30, tzinfo=UTC)
    counts: dict[str, dict[str, int]] = {}
    for run in range(runs):
        site, (country, place) = list(SITES.items())[run % len(SITES)]
        accepted = []
        for lm in landmarks:
            light = rtt_us_for(distance_m(place, lm.place)) * (1 + rng.uniform(0, 0.5))
            samples = [round(light + rng.choice(overheads) + rng.expovariate(1 / 500)) for _ in range(5)]
            m = fmt.Measurement(lm.keyid, "0" * 64, ("0" * 64,) * 5, tuple(samples), min(samples), at, str(run))
            accepted.append(Accepted(m, records[lm.name], b""))
        verdict = assess("n", site, country, SiteLocation(site, place.lat, place.lon), accepted, settings)
        row = counts.setdefault(site, {"runs": 0, IMPLAUSIBLE: 0, IN_COUNTRY: 0, "unproven": 0})
        row["runs"] += 1
        row[verdict.status] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measurements", type=int, default=400)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo()
        return
    overhead = protocol_overhead(args.measurements)
    km_per_us = DEFAULT_FIBRE_SPEED_KM_PER_S / 1e6
    transport = transports(args.measurements * 5)
    fp = false_positives(args.runs, overhead)
    result = {
        "protocol_overhead_us": {"samples": len(overhead), "min": min(overhead),
                                 "median": statistics.median(overhead), "p99": percentile(overhead, 0.99)},
        "distance_error_km": {"median": statistics.median(overhead) / 2 * km_per_us,
                              "p99": percentile(overhead, 0.99) / 2 * km_per_us},
        "transport_rtt_us": {name: {"median": statistics.median(t), "p99": percentile(t, 0.99)}
                             for name, t in transport.items()},
        "honest_runs": fp,
        "false_positive_rate": sum(r[IMPLAUSIBLE] for r in fp.values()) / max(1, args.runs),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    o, d = result["protocol_overhead_us"], result["distance_error_km"]
    print(
        f"protocol overhead on loopback ({o['samples']} round trips incl. the node's Ed25519 signature): "
        f"min {o['min']} us, median {o['median']:.0f} us, p99 {o['p99']:.0f} us"
    )
    print(f"distance it adds to a bound at 2/3 c: median {d['median']:.1f} km, p99 {d['p99']:.1f} km")
    for name, t in result["transport_rtt_us"].items():
        print(f"transport {name:4}: median {t['median']:.0f} us, p99 {t['p99']:.0f} us (32 bytes out, 64 back)")
    for site, row in fp.items():
        print(f"honest {site}: {row}")
    print(f"false positives (location.implausible for an honest node): {result['false_positive_rate']:.3%} "
          f"of {args.runs} simulated runs")  # fmt: skip


if __name__ == "__main__":
    main()
