"""Accounting, table-driven: one row per catalogue entry and one per 3A090 threshold boundary."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from gpucensus.common.accounting import (
    BASIS_CATALOGUE,
    BASIS_DERIVED,
    BASIS_UNKNOWN,
    AccountingCache,
    account_device,
    classify,
    load_rules,
    milli,
)
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.devices import STATUS_INCOMPLETE, STATUS_LOST, STATUS_OK, GpuDevice
from hypothesis import given, settings
from hypothesis import strategies as st

RULES = load_rules()
CATALOGUE = load_catalogue()

# Spot rows: the classes and densities docs/regulation.md §5 quotes (every entry is checked against its own stated
# class in test_catalogue_audit.py). id, expected ECCN, pd_milli (round(1000 x TPP / die area)), h100e_milli.
CATALOGUE_ROWS = [
    ("a100-sxm4-40gb", "3A090.a", 6044, 315),  # TPP 4992 >= 4800
    ("a30", "3A090.b", 3201, 167),  # 2644 / 826 = 3.2010 >= 3.2, TPP >= 1600: second .b prong
    ("a40", "3A090.b", 3814, 151),  # 2395 < 2400 so not the first prong; PD 3.81 in [3.2, 5.92)
    ("a10", "not-3A090", 3185, 126),  # TPP 2000 < 2400 and PD 3.18 < 3.2
    ("l4", "3A090.a", 6599, 123),  # 1940 >= 1600 and PD 6.60 >= 5.92
    ("l20", "not-3A090", 3142, 121),  # 1912 < 2400, PD 3.14 < 3.2
    ("l40", "3A090.b", 4759, 183),  # 2896 in [2400, 4800), PD 4.76 in [1.6, 5.92)
    ("h100-sxm5", "3A090.a", 19450, 1000),
    ("h100-nvl", "3A090.a", 16423, 844),
    ("h200-nvl", "3A090.a", 16423, 844),  # consistent with the H100 NVL under the max-over-precisions rule
    ("h20", "not-3A090", 2909, 150),  # 2368 < 2400 and PD 2.91 < 3.2: outside 3A090 by the numbers
    ("b300", "3A090.a", None, 3790),  # die area unpublished; TPP >= 4800 decides
    ("rtx-4090", "3A090.a", 8685, 334),  # gaming card, but TPP >= 4800: Note 2 does not apply
    ("rtx-4090-d", "not-3A090", 7735, 297),  # not data centre and TPP 4707 < 4800: Note 2
    ("rtx-5090-d", "not-3A090", 6333, 300),  # not data centre and TPP 4750 < 4800: Note 2
    ("rtx-6000-ada", "3A090.a", 9578, 368),
    ("v100-sxm2", "not-3A090", 2454, 126),
]


@pytest.mark.parametrize(("entry_id", "eccn", "pd_milli", "h100e_milli"), CATALOGUE_ROWS)
def test_catalogue_entry(entry_id: str, eccn: str, pd_milli: int | None, h100e_milli: int) -> None:
    entry = CATALOGUE.by_id(entry_id)
    assert entry is not None and entry.tpp is not None
    result = classify(entry.tpp, entry.die_area_mm2, entry.datacenter, RULES)
    assert (result.eccn, result.pd_milli, result.h100e_milli) == (eccn, pd_milli, h100e_milli)


# tpp, die area, data centre?, expected class: each boundary of 3A090 met exactly and missed by the smallest step
BOUNDARY_ROWS = [
    (4800, None, True, "3A090.a"),  # TPP >= 4800, exactly
    (4799, "10000", True, "not-3A090"),  # one below, PD 0.48
    (2960, "500", True, "3A090.a"),  # PD = 5.92 exactly, TPP >= 1600
    (2960, "500.01", True, "3A090.b"),  # PD 5.9199 < 5.92 -> .b (TPP in [2400, 4800), PD >= 1.6)
    (1600, "270", True, "3A090.a"),  # TPP 1600 exactly, PD 5.926 >= 5.92
    (1599, "270", True, "not-3A090"),  # PD 5.922 but TPP 1599: below the floor of every density prong
    (2400, "1500", True, "3A090.b"),  # first .b prong at both floors: TPP 2400, PD 1.6
    (2399, "1500", True, "not-3A090"),  # PD 1.5993 and TPP < 2400
    (2400, "1500.01", True, "not-3A090"),  # PD 1.59999 < 1.6
    (1600, "500", True, "3A090.b"),  # second .b prong at both floors: TPP 1600, PD 3.2
    (1599, "499.6875", True, "not-3A090"),  # PD 3.2 exactly but TPP 1599 < 1600
    (1600, "500.01", True, "not-3A090"),  # PD 3.19994 < 3.2
    (4799, "100", False, "not-3A090"),  # Note 2: not data centre and TPP < 4800, whatever the density
    (4800, "100", False, "3A090.a"),  # Note 2 stops at TPP 4800
    (0, "100", True, "not-3A090"),
]


@pytest.mark.parametrize(("tpp", "area", "datacenter", "eccn"), BOUNDARY_ROWS)
def test_threshold_boundary(tpp: int, area: str | None, datacenter: bool, eccn: str) -> None:
    die_area = Fraction(area) if area else None
    assert classify(tpp, die_area, datacenter, RULES).eccn == eccn


def test_unknown_die_area_between_floors_is_controlled_and_flagged() -> None:
    result = classify(3000, None, True, RULES)
    assert result.eccn == "3A090.a"
    assert "die area unknown" in result.review


def test_h100e_is_tpp_over_h100_reference() -> None:
    assert classify(15832 * 3, None, True, RULES).h100e_milli == 3000
    assert milli(1, 3) == 333 and milli(2, 3) == 667 and milli(1, 2000) == 1  # half up


def test_device_matched_by_pci_device_id_before_name() -> None:
    device = GpuDevice(index=0, name="NVIDIA L4", pci_device_id="0x2330")
    assert account_device(device, CATALOGUE, RULES).model == "h100-sxm5"


def test_device_matched_by_name_when_pci_id_unknown() -> None:
    device = GpuDevice(index=0, name="NVIDIA L40S", pci_device_id="0x0001")
    acc = account_device(device, CATALOGUE, RULES)
    assert (acc.model, acc.basis, acc.tpp) == ("l40s", BASIS_CATALOGUE, 5864)


def test_unknown_device_is_derived_from_nvml_facts_and_flagged() -> None:
    # Hopper (cc 9.0): 4096 dense FP16 ops/clock/SM x 132 SMs x 1980 MHz x 16 bits / 1e6 = 17128.49, plus the 0.5 %
    # rounding allowance = 17215.13 -> 17215 (rounded up)
    device = GpuDevice(
        index=0,
        name="NVIDIA Graphics Device",
        pci_device_id="0x23ff",
        architecture="hopper",
        cuda_compute_capability="9.0",
        sm_count=132,
        max_sm_clock_mhz=1980,
    )
    acc = account_device(device, CATALOGUE, RULES)
    assert (acc.basis, acc.tpp, acc.eccn) == (BASIS_DERIVED, 17215, "3A090.a")
    assert acc.model == "" and acc.review.startswith("not in catalogue")


def test_unknown_device_sm_count_from_cuda_cores() -> None:
    # NVML reports 16896 CUDA cores, no SM count; cc 9.0 has 128 cores/SM -> 132 SMs -> 17215 TPP as above
    device = GpuDevice(
        index=0, pci_device_id="0x23fe", cuda_compute_capability="9.0", cuda_core_count=16896, max_sm_clock_mhz=1980
    )
    acc = account_device(device, CATALOGUE, RULES)
    assert (acc.basis, acc.tpp) == (BASIS_DERIVED, 17215)


def test_unknown_device_falls_back_to_architecture() -> None:
    device = GpuDevice(index=0, pci_device_id="0x0002", architecture="ampere", sm_count=10, max_sm_clock_mhz=1000)
    # ampere fallback 2048 ops x 10 x 1000 x 16 / 1e6 = 327.68, x 1.005 = 329.3 -> 330; below 1600: outside 3A090
    acc = account_device(device, CATALOGUE, RULES)
    assert (acc.basis, acc.tpp, acc.eccn) == (BASIS_DERIVED, 330, "not-3A090")


def test_unknown_device_without_facts_is_never_zero() -> None:
    device = GpuDevice(index=0, pci_device_id="0x0003", architecture="hopper")
    acc = account_device(device, CATALOGUE, RULES)
    assert acc.basis == BASIS_UNKNOWN and acc.tpp is None
    assert "sm_count" in acc.review


def test_lost_device_without_identity_is_unknown() -> None:
    acc = account_device(GpuDevice(index=3, status=STATUS_LOST), CATALOGUE, RULES)
    assert acc.basis == BASIS_UNKNOWN and acc.tpp is None


def test_negative_tpp_is_refused() -> None:
    with pytest.raises(ValueError):
        classify(-1, None, True, RULES)


# --- memoised accounting (the collector's ingest classifies the same parts again and again) -------------------
_SMALL = st.one_of(st.none(), st.sampled_from([0, 1, 7, 132, 1980, 4096]))


_FIELDS = {  # every GpuDevice fact, with values that reach the catalogue, the derivations and the lost-device rule
    "index": st.integers(0, 3),
    "uuid": st.sampled_from([None, "GPU-a", "GPU-b"]),
    "serial": st.sampled_from([None, "s1"]),
    "name": st.sampled_from([None, "", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "Mystery GPU"]),
    "pci_bus_id": st.sampled_from([None, "00000000:18:00.0", "00000000:19:00.0"]),
    "pci_device_id": st.sampled_from([None, "", "0x2330", "0x20b0", "0xffff"]),
    "pci_subsystem_id": st.sampled_from([None, "0x16c110de"]),
    "memory_total_bytes": _SMALL,
    "architecture": st.sampled_from([None, "hopper", "ampere", "martian"]),
    "cuda_compute_capability": st.sampled_from([None, "9.0", "8.0", "99.9"]),
    "sm_count": _SMALL,
    "cuda_core_count": _SMALL,
    "max_sm_clock_mhz": _SMALL,
    "memory_bus_width_bits": _SMALL,
    "max_memory_clock_mhz": _SMALL,
    "mig_mode": st.sampled_from([None, "enabled"]),
    "board_part_number": st.sampled_from([None, "692-2G520"]),
    "vbios_version": st.sampled_from([None, "96.00.30"]),
    "status": st.sampled_from([STATUS_OK, STATUS_LOST, STATUS_INCOMPLETE]),
    "error": st.sampled_from(["", "gone"]),
}


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_cached_accounting_is_account_device(data: st.DataObject) -> None:
    """Devices that differ in one fact at a time, through one shared cache (small, so entries are evicted): each
    answer is exactly what `account_device` says for that device, so a fact the figures depend on but the cache
    key lacks would hand one device another's figures."""
    base = GpuDevice(**{name: data.draw(values, label=name) for name, values in _FIELDS.items()})
    cache = AccountingCache(CATALOGUE, RULES, maxsize=data.draw(st.integers(1, 4), label="size"))
    devices = [base]
    for name in data.draw(st.lists(st.sampled_from(sorted(_FIELDS)), min_size=1, max_size=6), label="changed"):
        devices.append(dataclasses.replace(devices[-1], **{name: data.draw(_FIELDS[name], label=name)}))
    for device in devices + devices[::-1]:
        assert cache(device) == account_device(device, CATALOGUE, RULES)
    assert len(cache) <= cache.maxsize


def test_cache_serves_identical_parts_once_and_tells_types_apart() -> None:
    cache = AccountingCache(CATALOGUE, RULES)
    gpus = [GpuDevice(index=i, uuid=f"GPU-{i}", pci_device_id="0x2330", name="NVIDIA H100 80GB HBM3") for i in range(8)]
    assert [cache(g) for g in gpus] == [account_device(g, CATALOGUE, RULES) for g in gpus]
    assert (cache.misses, cache.hits) == (1, 7)
    derived = GpuDevice(index=0, architecture="hopper", cuda_compute_capability="9.0", sm_count=1, max_sm_clock_mhz=1)
    as_bool = GpuDevice(index=0, architecture="hopper", cuda_compute_capability="9.0", sm_count=True,  # type: ignore[arg-type]
                        max_sm_clock_mhz=1)  # fmt: skip
    cache(derived)
    cache(as_bool)
    assert cache.misses == 3  # 1 and True hash alike but are different facts


def test_cache_refuses_no_room() -> None:
    with pytest.raises(ValueError):
        AccountingCache(CATALOGUE, RULES, maxsize=0)
