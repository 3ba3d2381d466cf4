"""The benchmark harness's pure helpers (it runs only under `make bench`, so these keep it from rotting):
statistics, the fleet's per-node GPU identities and change schedule, page tokens and per-node totals."""

from __future__ import annotations

import json

import pytest
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.site_pages import page_token, parse_page_token
from gpucensus.collector.store.sqlcurrent import node_totals_rows

from tests.bench.fleet import changes, gpu_identity, node_predicate, site_of
from tests.bench.stats import percentile, ratio, summarize
from tests.ingest_nodes import mock_predicate


def test_summary_is_the_median_with_its_range_never_the_best_run() -> None:
    figure = summarize([300.0, 100.0, 200.0])
    assert (figure.median, figure.low, figure.high, figure.runs) == (200.0, 100.0, 300.0, 3)
    assert figure.text() == "200 (100–300)"
    with pytest.raises(ValueError):
        summarize([])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_ratio_says_when_the_limit_is_missing() -> None:
    assert ratio(50, 200) == "0.25"
    assert ratio(1, 0) == "—"


def test_every_node_has_gpus_of_its_own() -> None:
    identities = {gpu_identity(f"bench-{n}", i, 0) for n in range(50) for i in range(8)}
    assert len({uuid for uuid, _ in identities}) == len({serial for _, serial in identities}) == 400
    assert gpu_identity("bench-1", 0, 0) == gpu_identity("bench-1", 0, 0)  # the same fleet every run
    assert gpu_identity("bench-1", 0, 1) != gpu_identity("bench-1", 0, 0)  # a replaced GPU is a new one
    predicate = node_predicate(mock_predicate("base"), "bench-7", [0, 1, 0, 0, 0, 0, 0, 0])
    assert predicate["node"]["id"] == "bench-7"
    assert predicate["devices"][1]["uuid"] == gpu_identity("bench-7", 1, 1)[0]


def test_change_schedule_is_deterministic_and_follows_the_fraction() -> None:
    rounds = changes("bench-3", 2000, 0.25)
    assert rounds == changes("bench-3", 2000, 0.25) and not rounds[0]
    assert 0.2 < sum(rounds) / len(rounds) < 0.3
    assert not any(changes("bench-3", 100, 0.0)) and sum(changes("bench-3", 100, 1.0)) == 99


def test_sites_spread_round_robin_with_a_country_each() -> None:
    assert [site_of(i, 3)[0] for i in range(4)] == ["site-000", "site-001", "site-002", "site-000"]
    assert len({site_of(i, 8)[1] for i in range(8)}) == 8


def test_page_tokens_round_trip_and_refuse_what_was_not_issued() -> None:
    assert parse_page_token("") == ("", "")
    assert parse_page_token(page_token("fra1", "node-9")) == ("fra1", "node-9")
    for bad in ("%%%", "bm90IGpzb24=", page_token("a", "b")[:-2], "W10=", "x" * 3000):  # W10= is "[]"
        with pytest.raises(ConfigError):
            parse_page_token(bad)


def test_node_totals_buckets_by_class_and_leaves_out_decommissioned_gpus() -> None:
    devices = [("a", 100, "3A090.a"), ("b", 50, "3A090.a"), ("c", None, "3A090.a"), ("d", 7, ""), ("", 1, "")]
    assert node_totals_rows(devices, set()) == [["", 3, 8, 1], ["3A090.a", 2, 150, 0]]
    assert node_totals_rows(devices, {"a", "c"}) == [["", 2, 8, 0], ["3A090.a", 1, 50, 0]]
    assert node_totals_rows([], set()) == []


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, ["full", "compact", "compact", "full", "compact", "compact", "full"]),
        (1, ["full", "compact", "full", "compact", "compact", "full", "compact"]),  # phase 37 % 3 = 1
    ],
)
def test_the_hourly_full_inventories_are_staggered_over_the_fleet(index: int, expected: list[str]) -> None:
    """Nodes do not all send their periodic full inventory on the same round (as agents started at different
    times would not): node i's first refresh comes early by its phase, later ones every `full_every` rounds."""
    from datetime import UTC, datetime

    from gpucensus.common.statement import COMPACT_PREDICATE_TYPE
    from gpucensus.common.verify import parse_envelope

    from tests.bench import fleet

    spec = fleet.FleetSpec(nodes=2, rounds=7, changed=0.0, full_every=3)
    node = fleet._fleet_node(fleet._node((spec, index, datetime.now(UTC).isoformat())))
    types = [json.loads(parse_envelope(e).envelope.payload)["predicateType"] for e in node.envelopes]
    assert ["compact" if t == COMPACT_PREDICATE_TYPE else "full" for t in types] == expected


def test_a_compact_fleet_is_accepted_as_the_agent_would_send_it(tmp_path) -> None:
    """The bench's `compact` mix: a full inventory, then compact statements naming it (a full one again every
    `full_every` rounds), each accepted by the collector's own pipeline without a finding."""
    from datetime import UTC, datetime

    from gpucensus.collector.ingest.pipeline import Pipeline
    from gpucensus.collector.store import open_store

    from tests.bench import fleet, loadgen

    spec = fleet.FleetSpec(nodes=1, rounds=7, changed=0.0, full_every=3)
    node = fleet._fleet_node(fleet._node((spec, 0, datetime.now(UTC).isoformat())))
    store = open_store("sqlite", data_dir=str(tmp_path))
    try:
        loadgen.enroll_fleet(store, [node], loadgen.utc_now())
        pipeline = Pipeline(store)
        results = [pipeline.ingest(envelope) for envelope in node.envelopes]
        assert [r.status for r in results] == ["accepted"] * 7 and not any(r.findings for r in results)
        kinds = [store.get_attestation(node.keyid, n).kind for n in range(1, 8)]  # type: ignore[union-attr]
        assert kinds == ["full", "compact", "compact", "full", "compact", "compact", "full"]
    finally:
        store.close()
