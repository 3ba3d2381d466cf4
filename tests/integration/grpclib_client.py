"""A gpucensus client written with grpclib (pure-Python asyncio HTTP/2), not grpcio: it calls the standard
health service and `Report` and prints what it got as JSON. Run in its own interpreter by
`test_server_transport.py` (grpclib's health messages cannot share a process with grpcio-health-checking's).

    python -m tests.integration.grpclib_client PORT ENVELOPE_FILE...
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from gpucensus.protos import census_pb2 as pb
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

REPORT = "/gpucensus.v1.Census/Report"


async def run(port: int, envelopes: list[bytes]) -> dict:
    out: dict = {"acks": []}
    async with Channel("127.0.0.1", port) as channel:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service="gpucensus.v1.Census"), timeout=10)
        out["health"] = HealthCheckResponse.ServingStatus.Name(reply.status)
        try:
            async with channel.request(REPORT, Cardinality.STREAM_STREAM, pb.Envelope, pb.Ack, timeout=10) as stream:
                for envelope in envelopes:
                    await stream.send_message(pb.Envelope(dsse=envelope))
                    ack = await stream.recv_message()
                    out["acks"].append(
                        {"sequence": ack.sequence, "status": pb.AckStatus.Name(ack.status), "duplicate": ack.duplicate}
                    )
                await stream.end()
        except GRPCError as err:
            out["error"] = err.status.name
    return out


def main(argv: list[str]) -> int:
    port, paths = int(argv[0]), argv[1:]
    print(json.dumps(asyncio.run(run(port, [Path(p).read_bytes() for p in paths]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
