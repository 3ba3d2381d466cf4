"""The store contract, part 2: findings, equivocation evidence, the upgrade to schema version 2, odd values.

Every implementation in `collector.store.STORES` must pass it (a real SQLite file and the real PostgreSQL).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from gpucensus.collector.store import migrate, open_store
from gpucensus.collector.store.base import Evidence, Finding

from tests.integration.old_rows import store_as_before
from tests.integration.test_store_contract import T0, at, attestation, gpu, registry

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind


def test_findings_are_listed_newest_first_and_filtered(make_store) -> None:
    store = make_store()
    registry(store)
    store.add_findings([
        Finding("chain.gap", "warning", "node:node-fra1", "missing 2..3", "k-fra1", 4, at(1)),
        Finding("chain.equivocation", "violation", "node:node-fra1", "two digests", "k-fra1", 4, at(2)),
        Finding("node.stale", "warning", "node:node-sin1", "silent", created_at=at(3)),
    ])  # fmt: skip
    store.add_findings([])
    assert [f.rule_id for f in store.list_findings()] == ["node.stale", "chain.equivocation", "chain.gap"]
    assert [f.rule_id for f in store.list_findings(keyid="k-fra1", limit=1)] == ["chain.equivocation"]
    assert [f.rule_id for f in store.list_findings(rule_id="chain.gap")] == ["chain.gap"]
    assert [f.created_at for f in store.list_findings(since=at(2))] == [at(3), at(2)]
    assert len(store.list_findings(subject="node:node-fra1")) == 2
    gap = store.list_findings(rule_id="chain.gap")[0]
    assert (gap.severity, gap.message, gap.sequence, gap.id is not None) == ("warning", "missing 2..3", 4, True)
    # findings not tied to a stored attestation never show up in a (duplicate) ack
    store.store_attestation(attestation("k-fra1", 4, []))
    got = store.get_attestation("k-fra1", 4)
    assert got is not None and got.findings == ()


def test_a_finding_about_one_envelope_is_recorded_once_however_often_it_is_resent(make_store) -> None:
    store = make_store()
    registry(store)
    about = Finding("chain.equivocation", "violation", "node:node-fra1", "two digests", "k-fra1", 2, at(1),
                    digest="d-2b")  # fmt: skip
    for minutes in (1, 2, 3):  # the same rejected envelope, sent three times
        store.add_findings([replace(about, created_at=at(minutes))])
    other_envelope = replace(about, digest="d-2c")
    other_subject = replace(about, subject="gpu:GPU-a")
    store.add_findings([other_envelope, other_subject])
    found = store.list_findings(rule_id="chain.equivocation")
    assert sorted((f.subject, f.digest) for f in found) == [
        ("gpu:GPU-a", "d-2b"), ("node:node-fra1", "d-2b"), ("node:node-fra1", "d-2c")]  # fmt: skip
    assert [f.created_at for f in found if f.digest == "d-2b" and f.subject == "node:node-fra1"] == [at(1)]
    # a finding about no envelope (no digest) is recorded every time: each is a new observation
    stale = Finding("node.stale", "warning", "node:node-sin1", "silent")
    store.add_findings([stale])
    store.add_findings([stale])
    assert len(store.list_findings(rule_id="node.stale")) == 2


def test_equivocation_evidence_is_kept_once_byte_for_byte_and_never_as_an_attestation(make_store) -> None:
    store = make_store()
    registry(store)
    store.store_attestation(attestation("k-fra1", 2, [gpu("GPU-a")]))
    envelope = b'{"payload":"\x00\xff second","payloadType":"t","signatures":[]}'
    evidence = Evidence("k-fra1", 2, "digest-second", envelope, "digest-k-fra1-2", at(5))
    finding = Finding("chain.equivocation", "violation", "node:node-fra1", "fork", "k-fra1", 2, at(5),
                      digest="digest-second")  # fmt: skip
    store.add_findings([finding], evidence)
    store.add_findings([finding], evidence)  # resent: nothing new
    (kept,) = make_store().list_evidence("k-fra1")  # read back through a second handle
    assert (kept.keyid, kept.sequence, kept.digest, kept.envelope, kept.stored_digest, kept.received_at) == (
        "k-fra1", 2, "digest-second", envelope, "digest-k-fra1-2", at(5))  # fmt: skip
    assert kept.id is not None and store.list_evidence("k-sin1") == [] and len(store.list_evidence()) == 1
    assert store.get_attestation("k-fra1", 2).digest == "digest-k-fra1-2"  # the first envelope stays
    assert len(store.list_findings(rule_id="chain.equivocation")) == 1


def registry_as_written_by_version_1(store) -> None:
    """`registry` in the rows version 1 wrote (today's enroll writes columns version 1 did not have)."""
    with store._tx(True) as cur:
        cur.execute("INSERT INTO entities (id, headquarters, auth) VALUES ('acme', 'US', 'uveu')")
        for site, country in (("fra1", "DE"), ("sin1", "SG"), ("iad1", "US")):
            cur.execute("INSERT INTO sites (id, country, entity) VALUES (?, ?, 'acme')", (site, country))
            cur.execute(
                "INSERT INTO node_keys (keyid, public_key_pem, node_id, site, token_hash, enrolled_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (f"k-{site}", f"PEM {site}", f"node-{site}", site, f"hash-{site}", store._t(T0)),
            )
            cur.execute(
                "INSERT INTO nodes (node_id, site, keyid, enrolled_at) VALUES (?, ?, ?, ?)",
                (f"node-{site}", site, f"k-{site}", store._t(T0)),
            )


def test_a_version_1_database_upgrades_to_version_2_keeping_everything(make_store, monkeypatch) -> None:
    every = migrate.load_migrations
    monkeypatch.setattr(migrate, "load_migrations", lambda dialect: every(dialect)[:1])
    old = make_store()  # a collector of schema version 1
    assert old.schema_version() == 1
    registry_as_written_by_version_1(old)
    # the version-1 code kept no current state (its migration, current_state, builds it from the stored attestations)
    store_as_before(old, attestation("k-fra1", 1, [gpu("GPU-a", index=3)]))
    with old._tx(True) as cur:  # written by the version-1 code, which knew no digest / once_key
        for _ in range(2):
            cur.execute(
                "INSERT INTO findings (rule_id, severity, subject, message, keyid, sequence, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("chain.equivocation", "violation", "node:node-fra1", "old", "k-fra1", 1, old._t(at(1))),
            )
    old.close()
    monkeypatch.undo()  # today's code and every migration
    new = open_store(make_store.kind, **make_store.options)
    try:
        assert new.schema_version() == migrate.latest_version(make_store.kind) >= 2
        assert [d.index for d in new.get_attestation("k-fra1", 1).devices] == [3]
        assert [f.message for f in new.list_findings()] == ["old", "old"]  # nothing lost, nothing rewritten
        assert new.list_evidence() == []
        assert sum(c.gpus for c in new.country_totals()) == 1  # current state, built by its migration
    finally:
        new.close()


def test_device_figures_take_any_signed_json_integer(make_store) -> None:
    # A device index is a signed JSON integer (up to 2**53 - 1): version 1 kept it in a 32-bit column there.
    store = make_store()
    registry(store)
    big = 2**53 - 1
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a", index=big, pd_milli=big, h100e_milli=big)]))
    (device,) = store.get_attestation("k-fra1", 1).devices
    assert (device.index, device.pd_milli, device.h100e_milli) == (big, big, big)


def test_statements_dated_before_the_year_1000_round_trip_and_sort_as_dates(make_store) -> None:
    # A signed statement may carry any YYYY timestamp; SQLite kept year 999 as "999-…", unreadable and
    # sorting after "2026-…", so the node's latest attestation was wrong.
    store = make_store()
    registry(store)
    ancient = [datetime(1, 1, 1, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC)]
    for seq, stated in enumerate(ancient, start=1):
        store.store_attestation(attestation("k-fra1", seq, [gpu("GPU-a")], timestamp=stated))
    store.store_attestation(attestation("k-fra1", 3, [gpu("GPU-b")], timestamp=at(0)))
    assert [store.get_attestation("k-fra1", s).timestamp for s in (1, 2, 3)] == [*ancient, at(0)]
    assert [d.uuid for d in store.node_devices("node-fra1")] == ["GPU-b"]  # the latest by date, not by text
