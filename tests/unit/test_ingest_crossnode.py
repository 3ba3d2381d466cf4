"""The cross-node step: one board in two machines, a board across a border, a board gone, a hidden board."""

from __future__ import annotations

from gpucensus.collector.ingest.crossnode import CrossnodeContext, Sighting, check_crossnode


def devices(*uuids: str) -> list[dict]:
    return [{"index": i, "uuid": u} for i, u in enumerate(uuids)]


def rules(findings) -> list[tuple[str, str]]:
    return [(f.rule_id, f.subject) for f in findings]


def run(context: CrossnodeContext, uuids=("GPU-a", "GPU-b"), pci=(), country: str = "DE") -> list[tuple[str, str]]:
    return rules(
        check_crossnode(node_id="n1", country=country, devices=devices(*uuids), pci_functions=pci, context=context)
    )


def test_nothing_to_say_about_a_node_that_did_not_change() -> None:
    context = CrossnodeContext(previous_uuids=frozenset({"GPU-a", "GPU-b"}), last_country={"GPU-a": "DE"})
    assert run(context) == []


def test_a_uuid_another_node_currently_reports_is_a_duplicate() -> None:
    context = CrossnodeContext(current_elsewhere={"GPU-b": (Sighting("n2", "FR"),)}, last_country={"GPU-b": "FR"})
    assert run(context) == [("crossnode.duplicate-uuid", "gpu:GPU-b"), ("crossnode.moved-country", "gpu:GPU-b")]


def test_a_gpu_last_seen_in_another_country_moved() -> None:
    assert run(CrossnodeContext(last_country={"GPU-a": "PL"})) == [("crossnode.moved-country", "gpu:GPU-a")]


def test_a_gpu_gone_from_its_node_without_decommission_is_reported() -> None:
    context = CrossnodeContext(previous_uuids=frozenset({"GPU-a", "GPU-b", "GPU-c", "GPU-d"}))
    assert run(context) == [("crossnode.disappeared", "gpu:GPU-c"), ("crossnode.disappeared", "gpu:GPU-d")]


def test_a_decommissioned_gpu_may_disappear() -> None:
    context = CrossnodeContext(
        previous_uuids=frozenset({"GPU-a", "GPU-b", "GPU-c"}), decommissioned=frozenset({"GPU-c"})
    )
    assert run(context) == []


def test_a_gpu_on_the_pci_bus_that_nvml_did_not_report_is_hidden() -> None:
    pci = [
        {"bus_id": "0000:18:00.0", "device_id": "0x2330", "status": "matched"},
        {"bus_id": "0000:db:00.0", "device_id": "0x2330", "status": "not-in-nvml"},
    ]
    found = check_crossnode(
        node_id="n1", country="DE", devices=devices("GPU-a"), pci_functions=pci, context=CrossnodeContext()
    )
    assert rules(found) == [("crossnode.hidden-gpu", "node:n1")]
    assert "0000:db:00.0" in found[0].message


def test_devices_without_a_uuid_are_not_cross_checked() -> None:
    found = check_crossnode(
        node_id="n1",
        country="DE",
        devices=[{"index": 0, "status": "lost"}],
        pci_functions=[],
        context=CrossnodeContext(previous_uuids=frozenset()),
    )
    assert found == ()
