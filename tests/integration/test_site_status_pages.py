"""`GetSiteStatus` in pages over real gRPC: 10,000 nodes' status (more than the 1 MiB message limit in one
response, as the issue measured) arrives whole, every node once, every response under the limit; one site's
nodes page too; a forged or foreign page token is INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
from gpucensus.collector.site_pages import all_site_status, page_token
from gpucensus.protos import census_pb2 as pb

from tests.bench.scale import build, device_templates
from tests.ingest_nodes import NOW
from tests.integration.server_fixtures import DEADLINE, Collector, collector_fixture, status_of  # noqa: F401

LIMIT = 1024 * 1024  # the collector's default [server] max_message_bytes
NODES = 10_000


def test_10000_nodes_status_in_pages_under_the_message_limit(collector: Collector) -> None:
    build(collector.store, NODES, 2, device_templates(), NOW)  # two sites of 5,000 nodes each
    sizes: list[int] = []

    def fetch(request: pb.GetSiteStatusRequest) -> pb.GetSiteStatusResponse:
        response = collector.stub.GetSiteStatus(request, timeout=60)
        sizes.append(response.ByteSize())
        return response

    expected = {s.site: (s.nodes, s.gpus, s.tpp) for s in collector.store.site_status()}
    for page_size in (0, 10_000, 1_234):  # the default, more than fits in a message, a small one
        sizes.clear()
        sites = all_site_status(fetch, page_size=page_size)
        assert sum(sizes) > LIMIT and max(sizes) <= LIMIT, (page_size, sizes)  # one message could not hold it
        nodes = [n.node_id for s in sites for n in s.nodes]
        assert len(nodes) == len(set(nodes)) == NODES
        assert {s.site: (len(s.nodes), s.totals.gpus, s.totals.tpp) for s in sites} == expected
    sizes.clear()
    (one,) = all_site_status(fetch, site="site-0001", page_size=777)
    assert len(one.nodes) == NODES // 2 and len(sizes) == -(-NODES // 2 // 777)


def test_a_page_token_not_issued_for_the_request_is_invalid_argument(collector: Collector) -> None:
    collector.token("fra1")
    collector.token("sin1", "SG")
    for token in ("!!not base64!!", "bm90IGpzb24=", page_token("fra1", "n1")[:-4], "A" * 5000):
        request = pb.GetSiteStatusRequest(page_token=token)
        assert status_of(lambda r=request: collector.stub.GetSiteStatus(r, timeout=DEADLINE)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        ), token
    foreign = pb.GetSiteStatusRequest(site="sin1", page_token=page_token("fra1", "n1"))
    assert (
        status_of(lambda: collector.stub.GetSiteStatus(foreign, timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
    )
    # a token issued for this request resumes where it says: after node n1 of fra1, then the next site
    resumed = collector.stub.GetSiteStatus(
        pb.GetSiteStatusRequest(page_token=page_token("fra1", "n1")), timeout=DEADLINE
    )
    assert [s.site for s in resumed.sites] == ["fra1", "sin1"] and not resumed.next_page_token
