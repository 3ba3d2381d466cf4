"""The compliance state against a full `report` over a real store (SQLite and PostgreSQL): random sequences of
attestations (the ingest hook's incremental path), GPU decommissions and node moves (registry writes noticed
through the registry version) leave `ComplianceState.evaluation` equal to a full evaluation of the store's
inventory, exactly as `gpucensus-collector report` computes it, and the store's open policy findings equal its
findings. The pack has small caps (LPP 20,000 TPP, allocation 40,000 TPP) so a few H100s cross them."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from gpucensus.collector.compliance.state import ComplianceState
from gpucensus.collector.errors import StoreError
from gpucensus.collector.location.records import IMPLAUSIBLE, IN_COUNTRY, NodeLocation
from gpucensus.collector.location.status import UNKNOWN_SUFFIX
from gpucensus.collector.policy import evaluate, parse_scenario
from gpucensus.collector.policy.pack import pack_text, parse_pack
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, Entity, Site, Store
from gpucensus.collector.store.sqlite import SqliteStore
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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


def small_caps_text() -> str:
    text = pack_text("ai-diffusion-2025")[0]
    text = text.replace(
        "schedule = [{ from_year = 2025, tpp = 26900000 }]", "schedule = [{ from_year = 2025, tpp = 20000 }]"
    )
    return text.replace("tpp = 790000000", "tpp = 40000")


PACK_TEXT = small_caps_text()
PACK = parse_pack(PACK_TEXT, "small caps", "test")

gpus = st.lists(st.tuples(st.integers(0, 9), st.sampled_from(("h100", "h100", "l40s", "unknown"))), max_size=10)
report = st.tuples(st.just("report"), st.sampled_from(NODES), gpus)
decommission = st.tuples(st.just("decommission"), st.sampled_from(NODES), st.integers(0, 9))
move = st.tuples(st.just("move"), st.sampled_from(NODES), st.sampled_from([s.id for s in SITES]))
actions = st.lists(st.one_of(report, report, report, decommission, move), min_size=1, max_size=10)


def full_report(store: Store, now) -> tuple:
    ev = evaluate(parse_scenario(store.inventory(now), "live inventory"), PACK, load_catalogue(), load_rules())
    return ev, Counter((f.rule, f.severity, f.subject, f.message) for f in ev.findings)


REPORTED_AFTER_DECOMMISSION = [("report", "node-cn1", [(0, "h100")]), ("decommission", "node-cn1", 0),
                               ("report", "node-cn1", [(0, "h100")])]  # fmt: skip
TWO_ENTITIES_CROSS_AE = [
    ("report", "node-ae1", [(0, "h100"), (1, "h100")]),
    ("report", "node-ae3", [(0, "h100"), (1, "h100")]),
]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
@example(steps=TWO_ENTITIES_CROSS_AE)  # neither alone, both together over AE's allocation
@example(steps=REPORTED_AFTER_DECOMMISSION)  # the same devices, yet the GPU counts again
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
                previous = store.node_devices(node)  # what the pipeline reads before storing
                states = store.gpu_states({d.uuid for d in devices} | {d.uuid for d in previous})
                decommissioned = {u for u, g in states.items() if g.decommissioned_at is not None}
                store.store_attestation(AttestationRecord(
                    f"k-{node}", sequence[node], f"d-{node}-{step}", b"{}", node, site, clock[0], clock[0],
                    devices=devices))  # fmt: skip
                state.accepted(node, site, devices, previous, decommissioned)
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
            for site in expected.sites:  # what an Ack of a node there carries
                applies = {f"site:{site.id}", f"country:{site.country}", f"entity:{site.entity}"}
                carried = Counter((f.rule, f.severity, f.subject, f.message) for f in state.current().for_site(site.id))
                assert carried == Counter({k: n for k, n in findings.items() if k[2] in applies}), site.id
    finally:
        factory.cleanup()


def test_an_unchanged_inventory_is_not_evaluated_again_even_after_a_restart(tmp_path) -> None:
    """An attestation with the node's previous devices costs no evaluation: the state object stays the same, in
    the collector that saw the previous one and in one started since (no storm of re-evaluations at start-up)."""
    factory = StoreFactory("sqlite", tmp_path)
    store = factory()
    try:
        store.add_entity(ENTITIES[0])
        store.add_site(SITES[0])
        store.preregister_node("k-n", "PEM", "n", "ae1", T0, "operator:test")
        state = ComplianceState(store, PACK, load_catalogue(), load_rules(), clock=lambda: T0, refresh_seconds=0)
        state.refresh()
        devices = (DeviceRecord("GPU-1", **KINDS["h100"]),)  # type: ignore[arg-type]
        store.store_attestation(AttestationRecord("k-n", 1, "d1", b"{}", "n", "ae1", T0, T0, devices=devices))
        state.accepted("n", "ae1", devices, previous=())
        first = state.evaluation
        assert first is not None and first.sites[0].gpus == 1
        store.store_attestation(AttestationRecord("k-n", 2, "d2", b"{}", "n", "ae1", T0, T0, devices=devices))
        state.accepted("n", "ae1", devices, previous=devices)
        assert state.evaluation is first
        restarted = ComplianceState(store, PACK, load_catalogue(), load_rules(), clock=lambda: T0, refresh_seconds=0)
        restarted.refresh()
        started = restarted.evaluation
        store.store_attestation(AttestationRecord("k-n", 3, "d3", b"{}", "n", "ae1", T0, T0, devices=devices))
        restarted.accepted("n", "ae1", devices, previous=devices)
        assert restarted.evaluation is started
        restarted.accepted("n", "ae1", devices, previous=devices, decommissioned={"GPU-1"})  # counted again
        assert restarted.evaluation is not started
    finally:
        factory.cleanup()


class FlakyStore(SqliteStore):
    """A real SQLite store whose inventory read fails while `failing` (a database locked past its timeout)."""

    failing = False

    def inventory(self, as_of, sites=None):  # type: ignore[no-untyped-def]
        if self.failing:
            raise StoreError(f"SQLite error {self.where}: database is locked")
        return super().inventory(as_of, sites)


def test_a_failed_evaluation_at_ingest_never_fails_the_stored_attestation_and_heals(tmp_path, caplog) -> None:
    store = FlakyStore(data_dir=tmp_path)
    store.migrate()
    try:
        store.add_entity(ENTITIES[0])
        store.add_site(Site("cn1", "CN", "plain"))
        store.preregister_node("k-n", "PEM", "n", "cn1", T0, "operator:test")
        state = ComplianceState(store, PACK, load_catalogue(), load_rules(), clock=lambda: T0, refresh_seconds=0)
        state.refresh()
        devices = (DeviceRecord("GPU-1", **KINDS["h100"]),)  # type: ignore[arg-type]
        store.store_attestation(AttestationRecord("k-n", 1, "d1", b"{}", "n", "cn1", T0, T0, devices=devices))
        store.failing = True
        assert state.accepted("n", "cn1", devices) == ()  # no exception; the Ack has what was open before
        assert "cannot re-evaluate site cn1" in caplog.text
        store.failing = False
        assert state.check() is True  # the watcher's next look re-evaluates everything
        assert state.evaluation == full_report(store, T0)[0]
        assert [(f.rule, f.subject) for f in state.accepted("n", "cn1", devices)] == [("tier3.prohibited", "site:cn1")]
    finally:
        store.close()


def test_the_packs_implausible_as_unknown_option_moves_implausibly_located_nodes_into_unknown(
    store_kind: str, tmp_path: Path
) -> None:
    """The pack option `[location] implausible_as_unknown` counts the GPUs of implausibly located nodes in the
    country "unknown", in `report` and, the same way, in the state the collector keeps: when a verdict turns
    implausible (or plausible again) the next check re-evaluates, and an attestation of such a node keeps its GPUs
    in "unknown"."""
    pack = parse_pack(PACK_TEXT + "\n[location]\nimplausible_as_unknown = true\n", "located", "test")
    factory = StoreFactory(store_kind, tmp_path)
    store = factory()
    try:
        store.add_entity(ENTITIES[0])
        store.add_site(SITES[0])  # ae1, AE
        store.preregister_node("k-n", "PEM", "n", "ae1", T0, "operator:test")
        store.preregister_node("k-m", "PEM", "m", "ae1", T0, "operator:test")
        state = ComplianceState(store, pack, load_catalogue(), load_rules(), clock=lambda: T0, refresh_seconds=0)
        state.refresh()
        two = tuple(DeviceRecord(f"GPU-n{i}", i, **KINDS["h100"]) for i in range(2))  # type: ignore[arg-type]
        one = (DeviceRecord("GPU-m0", 0, **KINDS["h100"]),)  # type: ignore[arg-type]
        store.store_attestation(AttestationRecord("k-n", 1, "d1", b"{}", "n", "ae1", T0, T0, devices=two))
        state.accepted("n", "ae1", two)
        store.store_attestation(AttestationRecord("k-m", 1, "d2", b"{}", "m", "ae1", T0, T0, devices=one))
        state.accepted("m", "ae1", one)

        def counted() -> dict[str, int]:
            assert state.evaluation is not None
            return {c.country: c.tpp for c in state.evaluation.countries}

        assert counted() == {"AE": 3 * 15832}
        store.record_location((), NodeLocation("n", "ae1", IMPLAUSIBLE, "outside a landmark's bound", T0))
        assert state.check() is True  # the verdict moved: re-evaluated
        assert counted() == {"AE": 15832, "unknown": 2 * 15832}
        opened = {(f.rule_id, f.subject) for f in store.policy_findings(pack.name, open_only=True)}
        assert ("location.unknown", f"site:ae1{UNKNOWN_SUFFIX}") in opened
        assert state.check() is False  # nothing moved since

        store.store_attestation(AttestationRecord("k-n", 2, "d3", b"{}", "n", "ae1", T0, T0, devices=two[:1]))
        state.accepted("n", "ae1", two[:1], previous=two)  # still implausible: its one GPU left stays in unknown
        assert counted() == {"AE": 15832, "unknown": 15832}

        store.record_location((), NodeLocation("n", "ae1", IN_COUNTRY, "", T0))
        assert state.check() is True
        assert counted() == {"AE": 2 * 15832}
        opened = {(f.rule_id, f.subject) for f in store.policy_findings(pack.name, open_only=True)}
        assert not any(rule == "location.unknown" for rule, _ in opened)
    finally:
        factory.cleanup()
