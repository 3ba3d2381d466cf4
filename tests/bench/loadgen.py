"""The load generator: a real `gpucensus-collector serve` subprocess, driven over gRPC on loopback by client
processes, each holding several Report streams; every envelope's ack latency is recorded.

A stream sends one envelope and waits for its ack before the next (as an agent does), optionally paced to a
fixed rate; the latency is from handing the envelope to gRPC to reading its ack. Nodes are spread over the
streams so that each node's chain stays in order on one stream.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from gpucensus.collector.registry import new_token
from gpucensus.collector.store.base import Entity, Site, Store
from gpucensus.protos import census_pb2 as pb
from gpucensus.protos import census_pb2_grpc

from tests.bench.fleet import FleetNode, interleaved

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LoadResult:
    envelopes: int
    seconds: float
    latencies: list[float]  # seconds, one per acknowledged envelope
    refused: int  # acks not ACCEPTED (a bench fleet should have none)

    @property
    def rate(self) -> float:
        return self.envelopes / self.seconds


def enroll_fleet(store: Store, nodes: list[FleetNode], now: datetime) -> None:
    """The registry and one enrolled key per node, through the store API (no gRPC: setup, not measured)."""
    if store.get_entity("bench") is None:
        store.add_entity(Entity("bench", "US"))
    for site in sorted({(n.site, n.country) for n in nodes}):
        if store.get_site(site[0]) is None:
            store.add_site(Site(site[0], site[1], "bench"))
    for node in nodes:
        _token, record = new_token(node.site, now, timedelta(hours=1))
        store.add_token(record)
        store.enroll(node.keyid, node.public_key_pem, node.node_id, "", record.token_hash, now)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Collector:
    """`gpucensus-collector serve --config FILE` as users run it; stopped with SIGTERM."""

    def __init__(self, directory: Path, store_toml: str, extra_toml: str = "") -> None:
        self.port = free_port()
        self.config = directory / "collector.toml"
        self.config.write_text(
            f"{store_toml}\n[server]\nlisten = \"127.0.0.1:{self.port}\"\n"
            "node_envelopes_per_minute = 0\nnode_bytes_per_minute = 0\nmax_streams_per_peer = 256\n"
            f"{extra_toml}\n"
        )  # fmt: skip
        self.log = (directory / "collector.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpucensus.collector.cli", "serve", "--config", str(self.config),
             "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_ready()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the collector exited ({self.process.returncode}); see {self.log.name}")
            try:
                with grpc.insecure_channel(self.address) as channel:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                    return
            except grpc.FutureTimeoutError:
                continue
        raise RuntimeError(f"the collector did not start within {seconds} s")

    def cpu_seconds(self) -> float:
        """User + system CPU the collector process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _stream(address: str, envelopes: list[bytes], interval: float, results: list, start_at: float) -> None:
    """One lockstep Report stream (send, wait for the ack, send the next), paced every `interval` s if > 0."""
    acked = threading.Event()
    sent: list[float] = []
    latencies: list[float] = []
    refused = 0

    def requests() -> Iterator[pb.Envelope]:
        due = start_at
        for envelope in envelopes:
            if interval > 0:
                due += interval
                time.sleep(max(0.0, due - time.perf_counter()))
            acked.clear()
            sent.append(time.perf_counter())
            yield pb.Envelope(dsse=envelope)
            acked.wait()

    with grpc.insecure_channel(address) as channel:
        stub = census_pb2_grpc.CensusStub(channel)
        for ack in stub.Report(requests(), timeout=3600):
            latencies.append(time.perf_counter() - sent[len(latencies)])
            refused += ack.status != pb.ACK_STATUS_ACCEPTED
            acked.set()
    results.append((latencies, refused))


def _client(args: tuple[str, list[tuple[float, list[bytes]]], float, float]) -> tuple[list[float], int, float, float]:
    """One client process: its streams in threads; returns latencies, refusals, first send and last ack."""
    address, streams, interval, start_at = args
    time.sleep(max(0.0, start_at - time.time()))
    first, begin = time.time(), time.perf_counter()
    results: list = []
    threads = [  # paced streams start spread over one interval, so their sends do not arrive together
        threading.Thread(target=_stream, args=(address, envelopes, interval, results, begin + interval * phase))
        for phase, envelopes in streams
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = [x for r in results for x in r[0]]
    return latencies, sum(r[1] for r in results), first, time.time()


def drive(
    address: str | list[str], nodes: list[FleetNode], streams: int, processes: int, rate: float = 0.0
) -> LoadResult:
    """Send every node's envelopes over `streams` streams from `processes` client processes; `rate` > 0 paces the
    whole load to that many envelopes per second (spread evenly over the streams). Several addresses (collectors
    sharing one database): the client processes take them in turn, as a DNS round robin would hand them out;
    a node's envelopes all go over one stream, so to one collector."""
    addresses = [address] if isinstance(address, str) else address
    per_stream: list[list[bytes]] = [list(interleaved(nodes[i::streams])) for i in range(streams)]
    per_stream = [s for s in per_stream if s]
    interval = len(per_stream) / rate if rate > 0 else 0.0
    phased = [(i / len(per_stream), envelopes) for i, envelopes in enumerate(per_stream)]
    plan = [(addresses[p % len(addresses)], phased[p::processes], interval)
            for p in range(processes) if phased[p::processes]]  # fmt: skip
    with multiprocessing.get_context("spawn").Pool(len(plan)) as pool:
        pool.map(abs, range(len(plan)))  # the client processes start before the clock does
        start_at = time.time() + 0.5
        outcomes = pool.map(_client, [(*p, start_at) for p in plan])
    latencies = [x for o in outcomes for x in o[0]]
    seconds = max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
    return LoadResult(len(latencies), seconds, latencies, sum(o[1] for o in outcomes))


def split_rounds(nodes: list[FleetNode], rounds: int) -> tuple[list[FleetNode], list[FleetNode]]:
    """The fleet's first `rounds` reports per node, and the rest (each node's chain continues where it stopped)."""
    return ([replace(n, envelopes=n.envelopes[:rounds]) for n in nodes],
            [replace(n, envelopes=n.envelopes[rounds:]) for n in nodes])  # fmt: skip


def utc_now() -> datetime:
    return datetime.now(UTC)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
