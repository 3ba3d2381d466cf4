"""The recompute step: the collector's figures come from the facts alone; the agent's are only compared."""

from __future__ import annotations

import pytest

from agent.accounting import load_rules
from agent.catalogue import load_catalogue
from collector.ingest.recompute import recompute
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
