"""The catalogue audited against itself and the rules, entry by entry (issue 11).

Every entry's TPP is recomputed here from the raw JSON (its dense peak figures x bit length, the highest over
precisions, 88 FR 73458) without the catalogue loader; its stated class is checked against the 3A090 thresholds;
every entry cites sources from the catalogue's table or says what could not be confirmed, and every such entry is
listed in docs/regulation.md; and the TPP derived from a part's SM count and boost clock (what the agent does for a
part it cannot name) is never below the catalogue's figure.
"""

from __future__ import annotations

import json
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from gpucensus.common.accounting import classify, derive_tpp, load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.devices import GpuDevice

ROOT = Path(__file__).resolve().parents[2]
RAW = json.loads(resources.files("gpucensus.common.data").joinpath("catalogue.json").read_text(encoding="utf-8"))
RULES = load_rules()
CATALOGUE = load_catalogue()
IDS = [raw["id"] for raw in RAW["accelerators"]]


def raw_entry(entry_id: str) -> dict[str, Any]:
    return next(raw for raw in RAW["accelerators"] if raw["id"] == entry_id)


@pytest.mark.parametrize("entry_id", IDS)
def test_tpp_is_the_highest_dense_peak_times_bit_length(entry_id: str) -> None:
    raw = raw_entry(entry_id)
    if raw["tpp"] is None:
        assert raw["eccn"] == "unknown" and raw.get("review"), "a part without figures must say why"
        return
    products = [Fraction(v) * RAW["bit_lengths"][precision] for precision, v in raw["dense_peaks"].items()]
    assert products, "a TPP needs the peak figures it comes from"
    highest = max(products)
    assert raw["tpp"] == int((highest * 2 + 1) // 2), f"{entry_id}: stated {raw['tpp']}, figures give {highest}"


@pytest.mark.parametrize("entry_id", IDS)
def test_stated_class_follows_from_the_thresholds(entry_id: str) -> None:
    entry = CATALOGUE.by_id(entry_id)
    assert entry is not None
    if entry.tpp is None:
        assert entry.eccn == "unknown"
        return
    assert classify(entry.tpp, entry.die_area_mm2, entry.datacenter, RULES).eccn == entry.eccn


@pytest.mark.parametrize("entry_id", IDS)
def test_every_entry_cites_a_source_or_says_what_is_missing(entry_id: str) -> None:
    raw = raw_entry(entry_id)
    assert raw["sources"], f"{entry_id}: no source"
    for source in raw["sources"]:
        cited = RAW["sources"][source]  # KeyError = a source id missing from the table
        assert cited["citation"] and cited["url"].startswith("https://")
    if raw.get("dram_bandwidth_gbs") is None or (raw.get("die_area_mm2") is None and raw["tpp"] is None):
        assert raw.get("review"), f"{entry_id}: a figure is missing and nothing says why"


def test_every_entry_under_review_is_listed_in_the_docs() -> None:
    doc = (ROOT / "docs" / "regulation.md").read_text(encoding="utf-8")
    missing = [raw["id"] for raw in RAW["accelerators"] if raw.get("review") and f"`{raw['id']}`" not in doc]
    assert not missing, f"entries marked review but not listed in docs/regulation.md: {missing}"


@pytest.mark.parametrize("entry_id", IDS)
def test_derivation_never_falls_below_the_catalogue(entry_id: str) -> None:
    entry = CATALOGUE.by_id(entry_id)
    assert entry is not None
    if entry.tpp is None or entry.compute_capability is None:
        return
    if entry.sm_count is None or entry.boost_clock_mhz is None:
        assert "boost clock not" in entry.review, f"{entry_id}: cannot be checked and does not say why"
        return
    device = GpuDevice(index=0, cuda_compute_capability=entry.compute_capability, sm_count=entry.sm_count,
                       max_sm_clock_mhz=entry.boost_clock_mhz)  # fmt: skip
    derived, reason = derive_tpp(device, RULES)
    assert derived is not None, reason
    assert derived >= entry.tpp, f"{entry_id}: derived {derived} below the catalogue's {entry.tpp}"


def test_blackwell_ultra_is_not_derived_with_the_blackwell_figure() -> None:
    # The defect issue 11 names: capability 10.3 used to fall back to 10.0 and under-estimate by a third.
    ultra = GpuDevice(index=0, cuda_compute_capability="10.3", sm_count=160, max_sm_clock_mhz=1907)
    blackwell = GpuDevice(index=0, cuda_compute_capability="10.0", sm_count=160, max_sm_clock_mhz=1907)
    ultra_tpp, blackwell_tpp = derive_tpp(ultra, RULES)[0], derive_tpp(blackwell, RULES)[0]
    assert ultra_tpp is not None and blackwell_tpp is not None
    assert ultra_tpp >= 60000 > blackwell_tpp  # GB300: 15 PFLOPS dense FP4 x 4


def test_a_device_the_catalogue_names_without_figures_is_derived_under_its_name() -> None:
    from gpucensus.common.accounting import BASIS_DERIVED, account_device

    device = GpuDevice(index=0, pci_device_id="0x2bb9", cuda_compute_capability="12.0", sm_count=188,
                       max_sm_clock_mhz=2600)  # fmt: skip
    acc = account_device(device, CATALOGUE, RULES)
    assert (acc.model, acc.basis) == ("rtx-6000d", BASIS_DERIVED)
    assert acc.review.startswith("catalogue rtx-6000d: figures not published")
