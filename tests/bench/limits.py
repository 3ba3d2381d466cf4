"""The machine's own limits, measured in the same run as the figures they bound: Ed25519 verify with
`cryptography` on one and two cores, a null bidi gRPC stream (sync and aio servers, 1 and 16 streams), batched
SQLite inserts (WAL, synchronous=FULL) and PostgreSQL round trips.

Why in the same run: the machine is shared, so a limit measured yesterday says nothing about today's figure;
the ratio of a figure to a limit measured minutes apart is what carries over to another machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

MIN_SECONDS = 1.0
_NULL_METHOD = "/bench.Null/Echo"


def rate(operation: Callable[[], object], min_seconds: float = MIN_SECONDS) -> float:
    """Operations per second of `operation`, run for at least `min_seconds` (and 10 times)."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or count < 10:
        operation()
        count += 1
    return count / elapsed


def _verify_rate(_: int = 0) -> float:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    message = b"x" * 9000  # about a bench envelope's PAE
    signature, public = key.sign(message), key.public_key()
    return rate(lambda: public.verify(signature, message))


def ed25519_verify(workers: int, threads: bool) -> float:
    """Verifications per second by `workers` threads (shows whether verify releases the GIL) or processes."""
    if threads:
        with ThreadPoolExecutor(workers) as pool:
            return sum(pool.map(_verify_rate, range(workers)))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(abs, range(workers))
        return sum(pool.map(_verify_rate, range(workers)))


def sqlite_batched_insert(directory: Path, row_bytes: int = 1024, batch: int = 100) -> float:
    """Rows per second, committed `batch` at a time (WAL, synchronous=FULL): the store's floor per row."""
    path = directory / "limit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT, body BLOB)")
    blob = b"x" * row_bytes

    def commit() -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (k, body) VALUES (?, ?)", ((str(i), blob) for i in range(batch)))
        conn.execute("COMMIT")

    try:
        return batch * rate(commit)
    finally:
        conn.close()
        path.unlink()


def sqlite_commit(directory: Path) -> float:
    """Single-row committed transactions per second (WAL, synchronous=FULL): one fsync each."""
    return sqlite_batched_insert(directory, batch=1)


def postgres_round_trip(dsn: str) -> float:
    """`SELECT 1` round trips per second on one connection to the PostgreSQL server; 0 if unreachable."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            return rate(lambda: conn.execute("SELECT 1").fetchone())
    except psycopg.Error:
        return 0.0


# --- the null bidi stream: a server that acks each message with its own bytes, nothing else ----------------
def serve_null(kind: str, port: int) -> None:
    """Run the null server (`sync` thread pool, `aio`, or `aio-pool`) on 127.0.0.1:port until killed. `aio-pool`
    is the collector's pattern with nothing to judge: read a message with a timeout, hand it to a thread pool of
    16 (the default `[server] max_workers`) and back, write a 270-byte ack (the size of the collector's)."""
    if kind == "aio-pool":
        pool = ThreadPoolExecutor(16)
        ack = b"a" * 270

        async def judge_aio(requests, context):  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            while True:
                message = await asyncio.wait_for(context.read(), 60)
                if message is grpc.aio.EOF:
                    return
                await context.write(await loop.run_in_executor(pool, lambda m=message: ack if m else b""))

        kind, echo_aio = "aio", judge_aio
    else:

        async def echo_aio(requests, context):  # type: ignore[no-untyped-def]
            async for message in requests:
                yield message

    if kind == "aio":

        async def main() -> None:
            server = grpc.aio.server()
            handler = grpc.stream_stream_rpc_method_handler(echo_aio)
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Null", {"Echo": handler}),))
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

        asyncio.run(main())
        return

    def echo(requests, context) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        yield from requests

    server = grpc.server(ThreadPoolExecutor(32))
    handler = grpc.stream_stream_rpc_method_handler(echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Null", {"Echo": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def _null_client(args: tuple[str, int, int, float]) -> int:
    """`streams` lockstep streams of `size`-byte messages for `seconds`; messages acknowledged."""
    address, streams, size, seconds = args
    counts: list[int] = []
    payload = b"x" * size

    def one() -> None:
        acked = threading.Event()
        deadline = time.perf_counter() + seconds

        def requests() -> Iterator[bytes]:
            while time.perf_counter() < deadline:
                acked.clear()
                yield payload
                acked.wait()

        with grpc.insecure_channel(address) as channel:
            call = channel.stream_stream(_NULL_METHOD)
            n = 0
            for _ in call(requests(), timeout=seconds + 30):
                n += 1
                acked.set()
            counts.append(n)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def null_stream(kind: str, streams: int, size: int = 9000, seconds: float = 2.0, processes: int = 2) -> float:
    """Messages per second through the null server of `kind` over `streams` lockstep streams (client
    processes of their own, so the clients do not share the server's GIL)."""
    return _null_run(kind, streams, size, seconds, processes)[0]


def null_server_cpu(kind: str, streams: int = 16, size: int = 1100, seconds: float = 2.0) -> float:
    """CPU µs the null server of `kind` spends per message (its process's user and system time), over `streams`
    lockstep streams of `size`-byte messages (1,100: a compact statement): what the transport costs a collector
    before any work."""
    messages, cpu = _null_run(kind, streams, size, seconds, 2)[1:]
    return 1e6 * cpu / messages


def _null_run(kind: str, streams: int, size: int, seconds: float, processes: int) -> tuple[float, int, float]:
    """(messages per second, messages, server CPU seconds) of one run against a fresh null server."""
    import psutil

    from tests.bench.loadgen import ROOT, free_port

    port = free_port()
    code = f"from tests.bench.limits import serve_null; serve_null({kind!r}, {port})"
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        processes = min(processes, streams)
        plan = [(f"127.0.0.1:{port}", len(range(p, streams, processes)), size, seconds) for p in range(processes)]
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pool.map(abs, range(processes))
            before = psutil.Process(server.pid).cpu_times()
            messages = sum(pool.map(_null_client, plan))
            after = psutil.Process(server.pid).cpu_times()
        cpu = (after.user + after.system) - (before.user + before.system)
        return messages / seconds, messages, cpu
    finally:
        server.terminate()
        server.wait()
