"""The compact statement's reference step (`collector.ingest.compact`), the bridge over rejected compact
statements, and the auditor's pruned-range coverage: pure functions, every branch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gpucensus.collector.audit.check_bundle import _covered
from gpucensus.collector.ingest import compact
from gpucensus.collector.ingest.model import Finding
from gpucensus.collector.store.base import FullInventory

LATEST = FullInventory(7, 5, "ab" * 32, "n1", "fra1", datetime(2026, 11, 23, tzinfo=UTC), True, "", "")


def check(named: tuple[int, str], latest: FullInventory | None = LATEST, accepted: bool = False) -> list[str]:
    found = compact.check_reference(node_id="n1", keyid="k" * 64, named=named, latest=latest,
                                    named_is_accepted_full=accepted)  # fmt: skip
    return [f.rule_id for f in found]


@pytest.mark.parametrize(
    "named, latest, accepted, rules",
    [
        ((5, "ab" * 32), LATEST, False, []),
        ((5, "ab" * 32), None, False, [compact.UNKNOWN]),
        ((5, "cd" * 32), LATEST, False, [compact.UNKNOWN]),
        ((4, "ab" * 32), LATEST, False, [compact.UNKNOWN]),
        ((3, "cd" * 32), LATEST, True, [compact.SUPERSEDED]),
        ((5, "ab" * 32), FullInventory(**{**LATEST.__dict__, "node_event": "moved"}), False, [compact.BINDING_CHANGED]),
        ((5, "ab" * 32), FullInventory(**{**LATEST.__dict__, "current": False}), False, [compact.BINDING_CHANGED]),
        ((5, "ab" * 32), FullInventory(**{**LATEST.__dict__, "decommissioned": "GPU-1"}), False,
         [compact.DECOMMISSIONED]),
    ],
)  # fmt: skip
def test_check_reference(named, latest, accepted, rules) -> None:
    assert check(named, latest, accepted) == rules


GAP = Finding("chain.missing-attestations", "warning", "node:n1", "gap")
MISMATCH = Finding("chain.previous-mismatch", "violation", "node:n1", "mismatch")


def bridge(first: int, last: int, previous: str, rejected: dict[int, str], findings=(GAP, MISMATCH)) -> list[str]:
    out = compact.bridge_rejected(tuple(findings), node_id="n1", first=first, last=last, previous=previous,
                                  rejected=rejected)  # fmt: skip
    return [f.rule_id for f in out]


def test_bridge_only_over_rejected_compact_statements_the_new_one_links_to() -> None:
    assert bridge(3, 4, "d4", {3: "d3", 4: "d4"}) == [compact.AFTER_REJECTED]
    assert bridge(3, 4, "d4", {4: "d4"}) == [GAP.rule_id, MISMATCH.rule_id]  # 3 is missing, not rejected
    assert bridge(3, 4, "xx", {3: "d3", 4: "d4"}) == [GAP.rule_id, MISMATCH.rule_id]  # links elsewhere
    assert bridge(3, 3, "d3", {3: "d3"}, findings=()) == []  # nothing to bridge
    assert bridge(1, compact.MAX_BRIDGE + 1, "d", {}) == [GAP.rule_id, MISMATCH.rule_id]


def test_pruned_ranges_cover_a_gap_without_enumerating_it() -> None:
    assert _covered(2, 4, [(2, 4)])
    assert _covered(2, 9, [(1, 3), (4, 4), (5, 20)])
    assert not _covered(2, 9, [(2, 4), (6, 9)])
    assert not _covered(2, 4, [(3, 9)])
    assert _covered(5, 10**15, [(1, 10**18)])
    assert not _covered(5, 6, [])
