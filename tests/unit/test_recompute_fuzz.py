"""Property tests: recompute treats every signed fact as hostile.

A predicate passed `check_statement` and its signature verified, so its shape is right at the top level; every
fact inside may still be anything JSON can carry. Mutated valid predicates must either recompute (into figures
every store can hold, and that the cross-node step can read) or raise `MalformedFactError` naming the field;
never another exception (which the servicer would answer INTERNAL, and the agent would retry forever).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from gpucensus.collector.ingest import crossnode
from gpucensus.collector.ingest.errors import MalformedError, MalformedFactError
from gpucensus.collector.ingest.recompute import recompute
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from hypothesis import given
from hypothesis import strategies as st

from tests.ingest_nodes import mock_predicate

CATALOGUE, RULES = load_catalogue(), load_rules()
PROFILES = ("dgx-h100", "unknown-device", "hidden-gpu", "one-lost-of-8", "mixed", "rtx-4090-workstation")
VALID = {name: mock_predicate("n1", name) for name in PROFILES}
INT64_MAX = 2**63 - 1

DEVICE_KEYS = (
    "index", "uuid", "serial", "name", "pci", "memory_total_bytes", "architecture", "cuda_compute_capability",
    "sm_count", "cuda_core_count", "max_sm_clock_mhz", "mig_mode", "status", "error", "mig_instances",
    "not_reported", "model", "basis", "eccn", "tpp", "h100e_milli", "die_area_mm2", "pd_milli", "review", "extra",
)  # fmt: skip
PCI_KEYS = ("bus_id", "device_id", "subsystem_id")
FUNCTION_KEYS = ("bus_id", "device_id", "class", "subsystem_id", "status", "nvml_index", "tpp", "extra")
CLAIMED_KEYS = ("model", "basis", "eccn", "tpp", "h100e_milli", "die_area_mm2", "pd_milli", "review", "extra")
TOTALS_KEYS = ("gpus", "tpp", "h100e_milli", "unaccounted", "not_in_nvml", "by_eccn")

ODD_STRINGS = (
    "", " ", "zz", "0x", "0xZZ", "-1", "0x-1", "0x2_330", " 0x2330 ", "0X2330", "2330", "0x12345", "0x" + "f" * 40,
    "\x1b[31mred", "line\nbreak", "\x00", "9.0", "hopper", "HOPPER", "lost", "incomplete", "ok", "matched",
    "not-in-nvml", "00000000:18:00.0", "0000:18:00.0", "x" * 5000, "\U0001d518", "\ud800",
)  # fmt: skip
ODD_INTS = (0, -1, 1, 2**31 - 1, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(ODD_INTS),
    st.text(max_size=40),
    st.sampled_from(ODD_STRINGS),
    st.floats(),
)
HOSTILE = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.sampled_from((*PCI_KEYS, "x", "")), SCALARS, max_size=4),
)


def _mutate_mapping(data: st.DataObject, target: dict[str, Any], keys: tuple[str, ...]) -> None:
    key = data.draw(st.one_of(st.sampled_from(keys), st.text(max_size=8)), label="key")
    if data.draw(st.booleans(), label="delete") and key in target:
        del target[key]
    else:
        target[key] = data.draw(HOSTILE, label="value")


def _pick(data: st.DataObject, items: list[Any]) -> Any:
    """One of the items that is still an object (an earlier round may have replaced some), or None."""
    objects = [item for item in items if isinstance(item, dict)]
    return data.draw(st.sampled_from(objects), label="which") if objects else None


def _mutate(data: st.DataObject, predicate: dict[str, Any]) -> None:
    where = data.draw(st.sampled_from(("device", "device-pci", "function", "list", "totals", "item")), label="where")
    devices, functions = predicate["devices"], predicate["pci_functions"]
    device, function = _pick(data, devices), _pick(data, functions)
    if where == "device" and device is not None:
        _mutate_mapping(data, device, DEVICE_KEYS)
    elif where == "device-pci" and device is not None and isinstance(device.get("pci"), dict):
        _mutate_mapping(data, device["pci"], PCI_KEYS)
    elif where == "function" and function is not None:
        _mutate_mapping(data, function, FUNCTION_KEYS)
    elif where == "list":
        name = data.draw(st.sampled_from(("devices", "pci_functions")))
        predicate[name].append(data.draw(HOSTILE, label="item"))
    elif where == "totals":
        _mutate_mapping(data, predicate["totals"], TOTALS_KEYS)
    elif where == "item" and devices:
        devices[data.draw(st.integers(0, len(devices) - 1))] = data.draw(HOSTILE, label="device")


def _check_storable(result: Any) -> None:
    """What the stores' columns hold (BIGINT figures and index), and bounded text."""
    for device in result.devices:
        assert isinstance(device.index, int) and -1 <= device.index <= 65_535
        for name in ("tpp", "pd_milli", "h100e_milli"):
            value = getattr(device, name)
            assert value is None or (isinstance(value, int) and 0 <= value <= INT64_MAX), (name, value)
        for text in (device.uuid, device.name, device.bus_id, device.status, device.error, device.model):
            assert isinstance(text, str) and len(text) <= 4096
    for finding in result.findings:
        assert len(finding.rule_id) <= 64 and len(finding.message) <= 4096


@pytest.mark.fuzz
@given(data=st.data(), profile=st.sampled_from(PROFILES), rounds=st.integers(1, 3))
def test_a_mutated_predicate_recomputes_or_is_refused_with_the_field_named(
    data: st.DataObject, profile: str, rounds: int
) -> None:
    predicate = copy.deepcopy(VALID[profile])
    for _ in range(rounds):
        _mutate(data, predicate)
    try:
        result = recompute(predicate, CATALOGUE, RULES)
    except MalformedFactError as err:
        assert isinstance(err, MalformedError)  # the servicer's table answers INVALID_ARGUMENT
        assert err.field and str(err).startswith(err.field)
        return
    _check_storable(result)
    crossnode.check_crossnode(  # the next step reads the same device list
        node_id="n1",
        country="US",
        devices=predicate["devices"],
        pci_functions=result.pci_functions,
        context=crossnode.CrossnodeContext(),
    )


@pytest.mark.fuzz
@given(profile=st.sampled_from(PROFILES), claims=st.lists(st.tuples(st.sampled_from(CLAIMED_KEYS), HOSTILE)))
def test_the_agents_claimed_figures_never_change_the_collectors(profile: str, claims: list) -> None:
    """A valid predicate recomputes to the same figures whatever the agent claims about them."""
    honest = recompute(VALID[profile], CATALOGUE, RULES)
    predicate = copy.deepcopy(VALID[profile])
    for device in predicate["devices"]:
        for name, value in claims:
            device[name] = value
    assert recompute(predicate, CATALOGUE, RULES).devices == honest.devices
