"""The store contract, continuous-compliance part: the registry version counter, the inventory of some sites,
and the recorded policy findings (open, update, clear; two collectors at once). SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

from gpucensus.collector.store.base import Entity, PolicyFinding, Site

from tests.integration.test_store_contract import T0, at, attestation, gpu, populated, registry

pytest_plugins = ["tests.integration.store_fixtures"]  # make_store, store_kind

PACK = "ai-diffusion-2025"


def test_every_registry_write_that_can_change_an_evaluation_bumps_the_version(make_store) -> None:
    store, other = make_store(), make_store()  # a second collector on the same database sees the same counter
    seen = [store.registry_version()]

    def bumped() -> bool:
        seen.append(other.registry_version())
        return seen[-1] > seen[-2]

    registry(store)  # 2 entities, 3 sites, 3 enrollments
    assert seen[-1] < other.registry_version() and bumped()
    store.store_attestation(attestation("k-fra1", 1, [gpu("GPU-a")], minutes=1))
    assert not bumped()  # an attestation is an inventory change the ingest hook handles itself
    store.add_site(Site("cdg1", "FR", "acme"))
    assert bumped()
    assert store.move_node("node-fra1", "cdg1", at(2), "operator:test")
    assert bumped()
    assert not store.move_node("node-fra1", "cdg1", at(3), "operator:test")  # already there: nothing changed
    assert not bumped()
    assert store.decommission_gpu("GPU-a", "RMA", at(4))
    assert bumped()
    assert not store.decommission_gpu("GPU-never-seen", "", at(4))
    store.add_entity(Entity("initech", "DE"))
    assert bumped()


def test_the_inventory_of_some_sites_is_the_full_inventory_cut_down(make_store) -> None:
    store = make_store()
    populated(store)
    whole = store.inventory(at(90))
    part = store.inventory(at(90), ["sin1", "iad1", "nowhere"])
    assert part["entities"] == whole["entities"]  # every entity, whatever its sites
    assert part["sites"] == [s for s in whole["sites"] if s["id"] in {"sin1", "iad1"}]
    assert store.inventory(at(90), [])["sites"] == []


def finding(subject: str, message: str, severity: str = "violation", rule: str = "country.allocation"):
    return PolicyFinding(rule, severity, subject, message)


def test_findings_open_stay_open_while_their_numbers_move_and_clear_when_gone(make_store) -> None:
    store = make_store()
    over = finding("country:AE", "country AE: 126,656 TPP (8.0 H100e), over the allocation 120,000 TPP")
    tier3 = finding("site:pek1", "site pek1 holds 8 device(s)", rule="tier3.prohibited")
    opened, cleared = store.reconcile_policy_findings(PACK, None, [over, tier3], at(1))
    assert [(f.subject, f.opened_at) for f in opened] == [("country:AE", at(1)), ("site:pek1", at(1))] and not cleared
    more = finding("country:AE", "country AE: 142,488 TPP (9.0 H100e), over the allocation 120,000 TPP")
    opened, cleared = store.reconcile_policy_findings(PACK, ["country:AE"], [more, tier3], at(2))
    assert opened == [] and cleared == []  # the same finding, new numbers; pek1 is outside the subjects given
    (row,) = store.policy_findings(PACK, subject="country:AE")
    assert (row.message, row.opened_at, row.cleared_at) == (more.message, at(1), None)
    warning = finding("country:AE", "country AE: 110,824 TPP, at ≥ 80 % of the allocation", severity="warning")
    opened, cleared = store.reconcile_policy_findings(PACK, ["country:AE"], [warning], at(3))
    assert [f.severity for f in opened] == ["warning"] and [(f.severity, f.cleared_at) for f in cleared] == [
        ("violation", at(3))
    ]
    assert [f.subject for f in store.policy_findings(PACK, open_only=True)] == ["site:pek1", "country:AE"]
    opened, cleared = store.reconcile_policy_findings(PACK, None, [], at(4))  # a full evaluation, nothing found
    assert opened == [] and {f.subject for f in cleared} == {"site:pek1", "country:AE"}
    history = store.policy_findings(PACK)
    assert [(f.severity, f.opened_at, f.cleared_at) for f in history] == [
        ("violation", at(1), at(3)), ("violation", at(1), at(4)), ("warning", at(3), at(4))
    ]  # fmt: skip
    assert store.policy_findings("another-pack") == []


def test_two_findings_of_one_rule_and_subject_are_told_apart_by_their_words(make_store) -> None:
    store = make_store()
    de = finding("entity:acme", "NVEU acme in DE: installed base 10 TPP is over the cap", rule="nveu.installed-base")
    fr = finding("entity:acme", "NVEU acme in FR: installed base 20 TPP is over the cap", rule="nveu.installed-base")
    store.reconcile_policy_findings(PACK, None, [de, fr], at(1))
    fr_more = finding("entity:acme", fr.message.replace("20", "30"), rule="nveu.installed-base")
    opened, cleared = store.reconcile_policy_findings(PACK, None, [fr_more], at(2))
    assert opened == [] and [f.message for f in cleared] == [de.message]


def test_two_collectors_reconciling_at_once_open_each_finding_once(make_store) -> None:
    stores = [make_store() for _ in range(4)]
    wanted = [finding(f"country:C{i}", f"country C{i} over") for i in range(20)]
    barrier = threading.Barrier(len(stores))

    def worker(store) -> None:
        barrier.wait()
        for step in range(5):
            store.reconcile_policy_findings(PACK, None, wanted, T0 + timedelta(seconds=step))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = stores[0].policy_findings(PACK)
    assert sorted(f.subject for f in rows) == sorted(f.subject for f in wanted)
    assert all(f.cleared_at is None for f in rows)


def test_inventory_change_notes_are_read_by_every_collector_and_deleted_after_an_hour(make_store) -> None:
    store, other = make_store(), make_store()
    first = store.note_inventory_change("fra1", at(0))
    second = other.note_inventory_change("sin1", at(1))
    assert second > first
    assert other.inventory_changes(at(0)) == [(first, "fra1"), (second, "sin1")]
    assert store.inventory_changes(at(0.5)) == [(second, "sin1")]
    third = store.note_inventory_change("fra1", at(61))  # an hour after the first: the first is deleted
    assert store.inventory_changes(at(-10)) == [(second, "sin1"), (third, "fra1")]
