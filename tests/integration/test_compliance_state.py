"""The compliance state against a full `report` over a real store (SQLite and PostgreSQL): random sequences of
attestations (the ingest hook's incremental path), GPU decommissions and node moves (registry writes noticed
through the registry version) leave `ComplianceState.evaluation` equal to a full evaluation of the store's
inventory, exactly as `gpucensus-collector report` computes it, and the store's open policy findings equal its
findings. The pack has small caps (LPP 20,000 TPP, allocation 40,000 TPP) so a few H100s cross them."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.compliance.state import ComplianceState
from collector.policy import evaluate, parse_scenario
from collector.policy.pack import Pack, pack_text, parse_pack
from collector.store.base import AttestationRecord, DeviceRecord, Entity, Site, Store
from common.accounting import load_rules
from common.catalogue import load_catalogue
from tests.integration.store_fixtures import StoreFactory
from tests.integration.test_store_contract import T0

pytest_plugins = ["tests.integration.store_fixtures"]  # store_kind

ENTITIES = (Entity("plain", "US"), Entity("other", "GB"), Entity("univ", "US", "uveu"), Entity("nat", "DE", "nveu"))
SITES = (Site("ae1", "AE", "plain"), Site("ae2", "AE", "univ"), Site("ae3", "AE", "other"), Site("us1", "US", "univ"),
         Site("cn1", "CN", "plain"),
         Site("in1", "IN", "nat"), Site("de1", "DE", "nat"))  # fmt: skip
NODES = tuple(f"node-{s.id}" for s in SITES)
KINDS = {
    "h100": {"model": "h100-sxm5", "basis": "catalogue", "tpp": 15832, "eccn": "3A090.a", "die_area_mm2": "814"},
    "l40s": {"model": "l40s", "basis": "catalogue", "tpp": 5824, "eccn": "3A090.a"},
    "unknown": {"model": "", "basis": "unknown", "tpp": None, "eccn": ""},
}


def small_caps() -> Pack:
    text = pack_text("ai-diffusion-2025")[0]
    text = text.replace(
        "schedule = [{ from_year = 2025, tpp = 26900000 }]", "schedule = [{ from_year = 2025, tpp = 20000 }]"
    )
    return parse_pack(text.replace("tpp = 790000000", "tpp = 40000"), "small caps", "test")


PACK = small_caps()

gpus = st.lists(st.tuples(st.integers(0, 9), st.sampled_from(("h100", "h100", "l40s", "unknown"))), max_size=10)
report = st.tuples(st.just("report"), st.sampled_from(NODES), gpus)
decommission = st.tuples(st.just("decommission"), st.sampled_from(NODES), st.integers(0, 9))
move = st.tuples(st.just("move"), st.sampled_from(NODES), st.sampled_from([s.id for s in SITES]))
actions = st.lists(st.one_of(report, report, report, decommission, move), min_size=1, max_size=10)


def full_report(store: Store, now) -> tuple:
    ev = evaluate(parse_scenario(store.inventory(now), "live inventory"), PACK, load_catalogue(), load_rules())
    return ev, Counter((f.rule, f.severity, f.subject, f.message) for f in ev.findings)


TWO_ENTITIES_CROSS_AE = [
    ("report", "node-ae1", [(0, "h100"), (1, "h100")]),
    ("report", "node-ae3", [(0, "h100"), (1, "h100")]),
]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
@example(steps=TWO_ENTITIES_CROSS_AE)  # neither alone, both together over AE's allocation
def test_after_every_change_the_state_equals_a_full_report(store_kind: str, tmp_path_factory, steps) -> None:
    factory = StoreFactory(store_kind, Path(tmp_path_factory.mktemp("store")))
    store = factory()
    try:
        clock = [T0]
        for e in ENTITIES:
            store.add_entity(e)
        for s, node in zip(SITES, NODES, strict=True):
            store.add_site(s)
            store.preregister_node(f"k-{node}", f"PEM {node}", node, s.id, T0, "operator:test")
        state = ComplianceState(store, PACK, load_catalogue(), load_rules(), clock=lambda: clock[0], refresh_seconds=0)
        state.refresh()
        sequence = Counter[str]()
        for step, (kind, node, arg) in enumerate(steps, start=1):
            clock[0] = T0 + timedelta(seconds=step)
            site = store.get_key(f"k-{node}").site
            if kind == "report":
                devices = tuple(DeviceRecord(f"GPU-{node}-{k}", i, **KINDS[what])  # type: ignore[arg-type]
                                for i, (k, what) in enumerate(dict(arg).items()))  # fmt: skip
                sequence[node] += 1
                store.store_attestation(AttestationRecord(
                    f"k-{node}", sequence[node], f"d-{node}-{step}", b"{}", node, site, clock[0], clock[0],
                    devices=devices))  # fmt: skip
                state.accepted(node, site, devices)
            elif kind == "decommission":
                store.decommission_gpu(f"GPU-{node}-{arg}", "test", clock[0])
                state.check()
            else:
                store.move_node(node, arg, clock[0], "operator:test")
                state.check()
            expected, findings = full_report(store, clock[0])
            assert state.evaluation == expected, f"after step {step}: {kind} {node} {arg}"
            opened = store.policy_findings(PACK.name, open_only=True)
            assert Counter((f.rule_id, f.severity, f.subject, f.message) for f in opened) == findings
            assert {(f.rule, f.subject) for f in state.current().findings} == {(r, s) for r, _, s, _ in findings}
    finally:
        factory.cleanup()


def test_an_unchanged_inventory_is_not_evaluated_again(tmp_path) -> None:
    """The second attestation with the same devices costs no store read: the state object is the same."""
    factory = StoreFactory("sqlite", tmp_path)
    store = factory()
    try:
        store.add_entity(ENTITIES[0])
        store.add_site(SITES[0])
        store.preregister_node("k-n", "PEM", "n", "ae1", T0, "operator:test")
        state = ComplianceState(store, PACK, load_catalogue(), load_rules(), clock=lambda: T0, refresh_seconds=0)
        state.refresh()
        devices = (DeviceRecord("GPU-1", **KINDS["h100"]),)  # type: ignore[arg-type]
        for seq in (1, 2):
            store.store_attestation(
                AttestationRecord("k-n", seq, f"d{seq}", b"{}", "n", "ae1", T0, T0, devices=devices)
            )
            state.accepted("n", "ae1", devices)
            if seq == 1:
                first = state.evaluation
        assert state.evaluation is first
    finally:
        factory.cleanup()
