"""`GetSiteStatus` in pages, so no response can exceed the gRPC message limit however many nodes a site has.

A page holds at most `page_size` nodes and stops before `max_bytes` (the server's message limit less a margin);
a site whose nodes do not fit continues on the next page, repeated with the same totals and its next nodes. The
page token names where the next page starts (site id, last node id sent); it is not secret and a caller may
not forge more than a starting point with it. Pages are separate reads: a node enrolled between two pages
appears if it sorts after the token, as in any keyset pagination.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from datetime import datetime

from gpucensus.collector import codec
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store.base import RecordNotFoundError, SiteStatus, Store, is_stale
from gpucensus.protos import census_pb2 as pb

DEFAULT_PAGE_NODES = 1000
MAX_PAGE_NODES = 10_000
MARGIN_BYTES = 16 * 1024  # framing and the rounding of the per-entry estimate below
_SITES_PER_READ = 100
_MAX_TOKEN_CHARS = 2048


def page_token(site: str, after_node: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([site, after_node]).encode()).decode()


def parse_page_token(token: str) -> tuple[str, str]:
    """(site, last node id sent) from a token this collector issued; ("", "") for the first page."""
    if not token:
        return "", ""
    try:
        if len(token) > _MAX_TOKEN_CHARS:
            raise ValueError("too long")
        value = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise ValueError("not a pair of ids")
    except (ValueError, UnicodeError, binascii.Error) as err:
        raise ConfigError(f"page_token is not one this collector issued ({err})") from None
    return value[0], value[1]


def site_status_page(
    store: Store,
    request: pb.GetSiteStatusRequest,
    *,
    now: datetime,
    stale_intervals: int,
    default_interval_seconds: int,
    max_bytes: int,
) -> pb.GetSiteStatusResponse:
    start_site, after_node = parse_page_token(request.page_token)
    if request.site:
        if start_site and start_site != request.site:
            raise ConfigError(f"page_token belongs to site {start_site!r}, not {request.site!r}")
        if not store.site_status([request.site]):
            raise RecordNotFoundError(f"no site {request.site!r}")
        ids = [request.site]
    else:
        ids = [s.id for s in store.list_sites() if s.id >= start_site]
    nodes_left = min(request.page_size or DEFAULT_PAGE_NODES, MAX_PAGE_NODES)
    budget = max(max_bytes - MARGIN_BYTES, max_bytes // 2)
    response = pb.GetSiteStatusResponse()
    used = page_nodes = 0
    for status in _statuses(store, ids):
        after = after_node if status.site == start_site else ""
        header = codec.site_status_to_pb(status, [], set())
        cost = header.ByteSize() + 8
        if response.sites and (nodes_left == 0 or used + cost > budget):
            response.next_page_token = page_token(status.site, after)
            break
        entry = response.sites.add()  # appended by reference: `append` would copy it
        entry.CopyFrom(header)
        used += cost
        nodes = store.list_nodes(status.site, after=after, limit=nodes_left + 1)
        for node in nodes:
            message = codec.node_status_to_pb(node, is_stale(node, now, stale_intervals, default_interval_seconds))
            size = message.ByteSize() + 8
            if nodes_left == 0 or (page_nodes and used + size > budget):
                response.next_page_token = page_token(status.site, entry.nodes[-1].node_id if entry.nodes else after)
                break
            entry.nodes.append(message)
            used, nodes_left, page_nodes = used + size, nodes_left - 1, page_nodes + 1
        if response.next_page_token:
            break
    return response


def _statuses(store: Store, ids: list[str]) -> Iterator[SiteStatus]:
    """Site status in id order, read a hundred sites at a time (a page rarely needs more)."""
    for start in range(0, len(ids), _SITES_PER_READ):
        yield from store.site_status(ids[start : start + _SITES_PER_READ])


def all_site_status(
    fetch: Callable[[pb.GetSiteStatusRequest], pb.GetSiteStatusResponse], site: str = "", page_size: int = 0
) -> list[pb.SiteStatus]:
    """Every page of `fetch` (a `GetSiteStatus` stub call), a site split over pages joined into one entry."""
    sites: list[pb.SiteStatus] = []
    token = ""
    while True:
        response = fetch(pb.GetSiteStatusRequest(site=site, page_size=page_size, page_token=token))
        for entry in response.sites:
            if sites and sites[-1].site == entry.site:
                sites[-1].nodes.extend(entry.nodes)
            else:
                sites.append(entry)
        token = response.next_page_token
        if not token:
            return sites
