"""The recompute step: the collector's figures come from the facts alone; the agent's are only compared."""

from __future__ import annotations

import copy

import grpc
import pytest
from gpucensus.collector.ingest.errors import MalformedFactError
from gpucensus.collector.ingest.recompute import recompute
from gpucensus.collector.statuses import status_for
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue

from tests.ingest_nodes import mock_predicate

CATALOGUE, RULES = load_catalogue(), load_rules()


def run(predicate: dict):
    return recompute(predicate, CATALOGUE, RULES)


@pytest.mark.parametrize(
    ("profile", "rule_ids"),
    [
        ("dgx-h100", []),
        ("one-lost-of-8", ["device.lost"]),
        ("unknown-device", ["accounting.review"]),
        ("hidden-gpu", []),  # the hidden board is counted here; crossnode reports it
    ],
)
def test_an_honest_agent_gets_no_accounting_finding(profile: str, rule_ids: list[str]) -> None:
    predicate = mock_predicate("n1", profile)
    result = run(predicate)
    assert sorted({f.rule_id for f in result.findings}) == rule_ids
    assert len(result.devices) == predicate["totals"]["gpus"]
    assert sum(d.tpp for d in result.devices if d.tpp is not None) == predicate["totals"]["tpp"]


def test_inflated_or_deflated_figures_are_a_finding_and_the_collectors_are_stored() -> None:
    predicate = mock_predicate("n1", "dgx-h100")
    predicate["devices"][3]["tpp"] = 1000  # under-report one board
    predicate["devices"][3]["eccn"] = "not-3A090"
    predicate["totals"]["tpp"] -= 14832
    result = run(predicate)
    rules = [(f.rule_id, f.subject) for f in result.findings]
    uuid = predicate["devices"][3]["uuid"]
    assert rules == [("accounting.mismatch", f"gpu:{uuid}"), ("accounting.totals-mismatch", "node:n1")]
    assert "tpp agent 1000 collector 15832" in result.findings[0].message
    assert result.devices[3].tpp == 15832 and result.devices[3].eccn == "3A090.a"


def test_a_figure_the_agent_left_out_is_a_mismatch() -> None:
    predicate = mock_predicate("n1", "dgx-h100")
    del predicate["devices"][0]["tpp"]
    assert "accounting.mismatch" in {f.rule_id for f in run(predicate).findings}


def test_the_collector_finds_the_hidden_gpu_itself_even_when_the_agent_calls_it_matched() -> None:
    predicate = mock_predicate("n1", "hidden-gpu")
    for function in predicate["pci_functions"]:
        function["status"] = "matched"
    result = run(predicate)
    assert [p["status"] for p in result.pci_functions].count("not-in-nvml") == 1
    hidden = [d for d in result.devices if d.error.startswith("on the PCI bus")]
    assert len(hidden) == 1 and hidden[0].tpp == 15832


def test_an_unknown_part_is_stored_as_derived_never_dropped() -> None:
    result = run(mock_predicate("n1", "unknown-device"))
    derived = [d for d in result.devices if d.basis == "derived"]
    assert derived and all(d.tpp for d in derived)


def test_a_non_datacenter_part_is_stored_as_such() -> None:
    result = run(mock_predicate("n1", "rtx-4090-workstation"))
    assert result.devices and not any(d.datacenter for d in result.devices)


def test_absurd_facts_are_a_finding_and_unaccounted_never_a_number_no_store_can_hold() -> None:
    predicate = mock_predicate("n1", "unknown-device")
    derived = next(i for i, d in enumerate(run(predicate).devices) if d.basis == "derived")
    predicate["devices"][derived].update(sm_count=2**53 - 1, max_sm_clock_mhz=2**53 - 1)  # signed, valid JSON
    result = run(predicate)
    device = result.devices[derived]
    assert (device.tpp, device.pd_milli, device.h100e_milli) == (None, None, None)  # unaccounted, not zero
    assert "accounting.out-of-range" in {f.rule_id for f in result.findings}


def _device(predicate: dict, i: int) -> dict:
    return predicate["devices"][i]


@pytest.mark.parametrize(
    ("case", "edit", "field"),
    [
        ("non-hex PCI id", lambda p: _device(p, 3)["pci"].update(device_id="0xZZ30"), "devices[3].pci.device_id"),
        ("PCI id with underscore", lambda p: _device(p, 3)["pci"].update(device_id="0x2_330"), "devices[3].pci.device_id"),  # noqa: E501
        ("negative SM count", lambda p: _device(p, 1).update(sm_count=-132), "devices[1].sm_count"),
        ("negative clock", lambda p: _device(p, 1).update(max_sm_clock_mhz=-1), "devices[1].max_sm_clock_mhz"),
        ("bool SM count", lambda p: _device(p, 1).update(sm_count=True), "devices[1].sm_count"),
        ("string SM count", lambda p: _device(p, 1).update(sm_count="132"), "devices[1].sm_count"),
        ("null clock", lambda p: _device(p, 1).update(max_sm_clock_mhz=None), "devices[1].max_sm_clock_mhz"),
        ("negative index", lambda p: _device(p, 0).update(index=-5), "devices[0].index"),
        ("index beyond NVML", lambda p: _device(p, 0).update(index=2**53 - 1), "devices[0].index"),
        ("missing index", lambda p: _device(p, 0).pop("index"), "devices[0].index"),
        ("status out of the set", lambda p: _device(p, 0).update(status="x" * 100), "devices[0].status"),
        ("escape in a UUID", lambda p: _device(p, 0).update(uuid="GPU-\x1b]0;pwned\x07"), "devices[0].uuid"),
        ("a huge name", lambda p: _device(p, 0).update(name="H" * 100_000), "devices[0].name"),
        ("architecture a list", lambda p: _device(p, 1).update(architecture=["hopper"]), "devices[1].architecture"),
        ("pci not an object", lambda p: _device(p, 2).update(pci="00000000:18:00.0"), "devices[2].pci"),
        ("device not an object", lambda p: p["devices"].append("GPU-x"), "devices[2]"),
        ("function without bus id", lambda p: p["pci_functions"][0].pop("bus_id"), "pci_functions[0].bus_id"),
        ("function non-hex id", lambda p: p["pci_functions"][0].update(device_id="gpu"), "pci_functions[0].device_id"),
        ("function not an object", lambda p: p["pci_functions"].append(7), "pci_functions[2]"),
    ],
)  # fmt: skip
def test_a_malformed_signed_fact_is_refused_with_the_field_named(case: str, edit, field: str) -> None:
    predicate = mock_predicate("n1", "unknown-device")  # device 1 is derived from its facts (SM count, clock)
    if case != "device not an object":  # four devices: devices[3] exists
        predicate["devices"] += [{**copy.deepcopy(predicate["devices"][0]), "index": i} for i in (2, 3)]
    edit(predicate)
    with pytest.raises(MalformedFactError) as raised:
        run(predicate)
    assert raised.value.field == field, case
    assert str(raised.value).startswith(f"{field}: ")
    assert len(str(raised.value)) < 200  # the message quotes a bounded part of the value
    assert status_for(raised.value) == grpc.StatusCode.INVALID_ARGUMENT


def test_cores_without_sms_are_derived_as_the_agent_derives_them() -> None:
    predicate = mock_predicate("n1", "unknown-device")
    device = next(d for d in predicate["devices"] if d["basis"] == "derived")
    honest = copy.deepcopy(device)
    device.pop("sm_count")
    device["cuda_core_count"] = 132 * 128
    for name in ("tpp", "h100e_milli", "eccn", "basis", "review"):  # what the agent's own code computes from them
        device[name] = honest[name]
    result = run(predicate)
    assert "accounting.mismatch" not in {f.rule_id for f in result.findings}
    assert result.devices[device["index"]].tpp == honest["tpp"]


def test_a_finding_quotes_a_bounded_part_of_an_absurd_claim() -> None:
    predicate = mock_predicate("n1", "dgx-h100")
    predicate["devices"][0]["model"] = "m" * 100_000
    predicate["totals"]["by_eccn"] = {"x" * 50_000: 1}
    findings = run(predicate).findings
    assert {f.rule_id for f in findings} == {"accounting.mismatch", "accounting.totals-mismatch"}
    assert all(len(f.message) < 1000 for f in findings)


def test_bandwidth_is_carried_and_an_older_agent_without_it_still_verifies() -> None:
    predicate = mock_predicate("n1", "dgx-h100")
    device = predicate["devices"][0]
    assert (device["dram_bandwidth_gbs"], device["bandwidth_basis"]) == (3350, "catalogue")
    assert (device["memory_bus_width_bits"], device["max_memory_clock_mhz"]) == (5120, 2619)
    older = copy.deepcopy(predicate)  # an agent from before issue 11: no bandwidth facts, no bandwidth figure
    for d in older["devices"]:
        for key in ("dram_bandwidth_gbs", "bandwidth_basis", "memory_bus_width_bits", "max_memory_clock_mhz"):
            del d[key]
    assert not run(older).findings
    predicate["devices"][0]["dram_bandwidth_gbs"] = 6499  # a claim below the 2026 threshold: compared when stated
    finding = run(predicate).findings[0]
    assert (
        finding.rule_id == "accounting.mismatch" and "dram_bandwidth_gbs agent 6499 collector 3350" in finding.message
    )
