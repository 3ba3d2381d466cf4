"""The chain step: replay, equivocation, gaps, broken links and clocks, as docs/auditors.md states them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from gpucensus.collector.ingest.chain import ChainContext, Link, check_chain

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
D1, D2, D3, D4 = ("1" * 64, "2" * 64, "3" * 64, "4" * 64)


def judge(new: Link, context: ChainContext, ahead: timedelta = timedelta(0), **kwargs) -> tuple:
    verdict = check_chain(node_id="n1", new=new, timestamp=NOW + ahead, context=context, now=NOW, **kwargs)
    return verdict.duplicate, verdict.rejected, [f.rule_id for f in verdict.findings]


CASES = [
    ("first envelope of a key", Link(1, D1, ""), ChainContext(), (False, False, [])),
    (
        "extends the chain",
        Link(2, D2, D1),
        ChainContext(predecessor=Link(1, D1), last=Link(1, D1)),
        (False, False, []),
    ),
    (
        "replay: same sequence, same digest",
        Link(2, D2, D1),
        ChainContext(stored=Link(2, D2, D1), predecessor=Link(1, D1), last=Link(2, D2)),
        (True, False, []),
    ),
    (
        "equivocation: same sequence, other digest",
        Link(2, D3, D1),
        ChainContext(stored=Link(2, D2, D1), predecessor=Link(1, D1), last=Link(2, D2)),
        (False, True, ["chain.equivocation"]),
    ),
    (
        "gap after the last stored",
        Link(5, D4, D3),
        ChainContext(last=Link(2, D2)),
        (False, False, ["chain.missing-attestations", "chain.previous-mismatch"]),
    ),
    (
        "first stored envelope is not sequence 1",
        Link(4, D4, D3),
        ChainContext(),
        (False, False, ["chain.missing-attestations"]),
    ),
    (
        "previous is not the stored predecessor",
        Link(2, D2, D3),
        ChainContext(predecessor=Link(1, D1), last=Link(1, D1)),
        (False, False, ["chain.previous-mismatch"]),
    ),
    (
        "late arrival below the newest",
        Link(2, D2, D1),
        ChainContext(predecessor=Link(1, D1), last=Link(3, D3)),
        (False, False, ["chain.out-of-order"]),
    ),
]


@pytest.mark.parametrize(("name", "new", "context", "expected"), CASES, ids=[c[0] for c in CASES])
def test_chain_rules(name: str, new: Link, context: ChainContext, expected: tuple) -> None:
    assert judge(new, context) == expected


@pytest.mark.parametrize(
    ("ahead", "skew", "rejected"),
    [
        (timedelta(minutes=4, seconds=59), timedelta(minutes=5), False),
        (timedelta(minutes=5), timedelta(minutes=5), False),
        (timedelta(minutes=5, seconds=1), timedelta(minutes=5), True),
        (timedelta(minutes=2), timedelta(minutes=1), True),
        (-timedelta(days=3), timedelta(minutes=5), False),  # old is fine: a spool drains late
    ],
)
def test_timestamp_in_the_future_is_rejected_beyond_the_skew(ahead: timedelta, skew: timedelta, rejected: bool) -> None:
    _, was_rejected, rules = judge(Link(1, D1, ""), ChainContext(), ahead, max_future_skew=skew)
    assert was_rejected is rejected
    assert rules == (["chain.future-timestamp"] if rejected else [])


def test_a_replay_is_a_duplicate_even_when_its_clock_has_since_become_suspicious() -> None:
    context = ChainContext(stored=Link(1, D1, ""), last=Link(1, D1))
    assert judge(Link(1, D1, ""), context, timedelta(hours=1)) == (True, False, [])


def test_equivocation_message_names_both_digests() -> None:
    context = ChainContext(stored=Link(2, D2, D1), last=Link(2, D2))
    verdict = check_chain(node_id="n1", new=Link(2, D3, D1), timestamp=NOW, context=context, now=NOW)
    (finding,) = verdict.findings
    assert D2 in finding.message and D3 in finding.message
    assert (finding.severity, finding.subject) == ("violation", "node:n1")


YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timestamp", "rejected"),
    [
        (YEAR_ONE, True),  # issue 8, finding 7: accepted before with only an out-of-order finding
        (NOW - timedelta(days=400), True),
        (NOW - timedelta(days=7, seconds=1), True),
        (NOW - timedelta(days=7), False),  # signed and spooled before the enrolment reached the collector
        (NOW - timedelta(minutes=1), False),
    ],
)
def test_a_timestamp_before_the_keys_enrolment_less_the_backdating_allowed_is_rejected(
    timestamp: datetime, rejected: bool
) -> None:
    context = ChainContext(predecessor=Link(1, D1), last=Link(1, D1))
    verdict = check_chain(
        node_id="n1",
        new=Link(2, D2, D1),
        timestamp=timestamp,
        context=context,
        now=NOW,
        not_before=NOW - timedelta(days=7),
    )
    assert verdict.rejected is rejected
    assert [f.rule_id for f in verdict.findings] == (["chain.past-timestamp"] if rejected else [])
