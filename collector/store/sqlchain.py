"""The SQL both stores share: where an incoming envelope stands in its key's chain, in one query.

The chain step needs three neighbours of (keyid, sequence): the envelope stored at that sequence (a replay or an
equivocation), the one at sequence - 1 (the previous link) and the key's highest stored sequence (out of order).
Each is only (sequence, digest, previous): one indexed query on `attestations (keyid, sequence)` returns all
three, instead of one transaction per neighbour and the previous envelope loaded in full with its devices and
findings only to read its digest.
"""

from __future__ import annotations

from gpucensus.collector.store.base import ChainHead, ChainLinks, StoredLink
from gpucensus.collector.store.sqlnodes import SqlNodes


class SqlChain(SqlNodes):
    def chain_links(self, keyid: str, sequence: int) -> ChainLinks:
        with self._tx(False) as cur:
            rows = cur.execute(
                "SELECT sequence, digest, previous FROM attestations WHERE keyid = ? AND (sequence IN (?, ?) "
                "OR sequence = (SELECT MAX(sequence) FROM attestations WHERE keyid = ?))",
                (keyid, sequence, sequence - 1, keyid),
            ).fetchall()
        links = {int(row[0]): StoredLink(int(row[0]), row[1], row[2]) for row in rows}
        highest = max(links, default=None)
        return ChainLinks(
            at=links.get(sequence),
            before=links.get(sequence - 1),
            head=ChainHead(highest, links[highest].digest) if highest is not None else None,
        )
