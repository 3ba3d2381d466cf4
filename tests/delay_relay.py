"""A delaying TCP relay for the location tests (this kernel has no netem): `python -m tests.delay_relay
--target HOST:PORT --rtt-ms D [--jitter-ms J] [--seed N]` listens on 127.0.0.1 (a free port, printed as
"listening on PORT") and forwards every connection to the target, holding each chunk D/2 ms in each direction,
plus up to J/2 ms of random jitter per chunk and direction, in order. So every round trip through it takes at
least D ms more than without it.
"""

from __future__ import annotations

import argparse
import queue
import random
import socket
import threading
import time


def _pump(src: socket.socket, dst: socket.socket, one_way_s: float, jitter_s: float, rng: random.Random) -> None:
    """Read from src, write to dst no earlier than one_way_s (+ jitter) after each chunk arrived, in order."""
    held: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def writer() -> None:
        while True:
            due, chunk = held.get()
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if not chunk:
                break
            try:
                dst.sendall(chunk)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    last_due = 0.0
    while True:
        try:
            chunk = src.recv(65536)
        except OSError:
            chunk = b""
        last_due = max(last_due, time.perf_counter() + one_way_s + rng.uniform(0, jitter_s))
        held.put((last_due, chunk))
        if not chunk:
            break
    thread.join()


def _serve(client: socket.socket, target: tuple[str, int], rtt_ms: float, jitter_ms: float, seed: int) -> None:
    rng = random.Random(seed)
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError:
        client.close()
        return
    for s in (client, upstream):
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    one_way, jitter = rtt_ms / 2000, jitter_ms / 2000
    back = threading.Thread(target=_pump, args=(upstream, client, one_way, jitter, random.Random(rng.random())))
    back.start()
    _pump(client, upstream, one_way, jitter, rng)
    back.join()
    client.close()
    upstream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--rtt-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    count = 0
    while True:
        client, _ = listener.accept()
        count += 1
        threading.Thread(
            target=_serve, args=(client, (host, int(port)), args.rtt_ms, args.jitter_ms, args.seed + count), daemon=True
        ).start()


if __name__ == "__main__":
    main()
