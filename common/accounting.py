"""Accounting: TPP, performance density, ECCN 3A090 class and H100-equivalents. Pure, standard library only.

Thresholds come from `common/data/eccn_3a090.toml`, derivation figures from `common/data/architectures.toml`; this
module holds no regulatory number. Comparisons are exact (integers and `Fraction`s), so the boundaries of the rule
(TPP 4800, PD 5.92 ...) fall exactly where the regulation puts them.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any

from gpucensus.common.catalogue import Catalogue, parse_decimal
from gpucensus.common.devices import STATUS_LOST, GpuDevice

ECCN_A = "3A090.a"
ECCN_B = "3A090.b"
NOT_3A090 = "not-3A090"
ECCN_UNKNOWN = "unknown"

BASIS_CATALOGUE = "catalogue"
BASIS_DERIVED = "derived"
BASIS_UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rules:
    """The 3A090 thresholds and derivation table, loaded from the packaged data files."""

    a_tpp_min: int
    a_density_tpp_min: int
    a_pd_min: Fraction
    b1_tpp_min: int
    b1_tpp_below: int
    b1_pd_min: Fraction
    b2_tpp_min: int
    b2_pd_min: Fraction
    b_pd_below: Fraction
    note2_tpp_below: int
    h100_reference_tpp: int
    by_capability: dict[str, tuple[int, int]]  # "9.0" -> (dense ops per clock per SM, bit length)
    cores_per_sm: dict[str, int]  # "9.0" -> CUDA cores per SM
    by_architecture: dict[str, tuple[int, int]]
    rounding_allowance: Fraction = Fraction(0)  # derived TPP x (1 + this), rounded up (architectures.toml)
    memory_transfers_per_clock: int = 2  # DRAM bandwidth from NVML facts (architectures.toml)


@dataclass(frozen=True)
class Classification:
    tpp: int
    die_area_mm2: Fraction | None
    pd_milli: int | None  # performance density x 1000, rounded half up; None when the die area is unknown
    eccn: str
    h100e_milli: int
    review: str = ""  # why a person should check this figure ("" when nothing to check)


@dataclass(frozen=True)
class Accounting:
    """A device's figures. `tpp` is None only for basis 'unknown' (counted as unaccounted, never as zero)."""

    model: str
    basis: str
    tpp: int | None
    die_area_mm2: Fraction | None
    pd_milli: int | None
    eccn: str
    h100e_milli: int | None
    review: str
    dram_bandwidth_gbs: int | None = None  # catalogue (datasheet) figure, else from NVML facts; None = unknown
    bandwidth_basis: str = ""  # "catalogue" | "derived" | ""


def _data(name: str) -> dict[str, Any]:
    with resources.files("gpucensus.common.data").joinpath(name).open("rb") as handle:
        return tomllib.load(handle)


def load_rules() -> Rules:
    eccn = _data("eccn_3a090.toml")
    arch = _data("architectures.toml")

    def frac(key: str) -> Fraction:
        value = parse_decimal(eccn[key], f"eccn_3a090.toml: {key}")
        assert value is not None
        return value

    fallback_bits = int(arch["fallback_bit_length"])
    return Rules(
        a_tpp_min=int(eccn["a_tpp_min"]),
        a_density_tpp_min=int(eccn["a_density_tpp_min"]),
        a_pd_min=frac("a_pd_min"),
        b1_tpp_min=int(eccn["b1_tpp_min"]),
        b1_tpp_below=int(eccn["b1_tpp_below"]),
        b1_pd_min=frac("b1_pd_min"),
        b2_tpp_min=int(eccn["b2_tpp_min"]),
        b2_pd_min=frac("b2_pd_min"),
        b_pd_below=frac("b_pd_below"),
        note2_tpp_below=int(eccn["note2_tpp_below"]),
        h100_reference_tpp=int(eccn["h100_reference_tpp"]),
        by_capability={
            cap: (int(row["dense_ops_per_clock_per_sm"]), int(row["bit_length"]))
            for cap, row in arch["capability"].items()
        },
        cores_per_sm={cap: int(row["cuda_cores_per_sm"]) for cap, row in arch["capability"].items()},
        by_architecture={name: (int(ops), fallback_bits) for name, ops in arch["architecture"].items()},
        rounding_allowance=parse_decimal(arch["rounding_allowance"], "architectures.toml: rounding_allowance")
        or Fraction(0),
        memory_transfers_per_clock=int(arch["memory_transfers_per_clock"]),
    )


def _round_half_up(value: Fraction) -> int:
    return int((value * 2 + 1) // 2)


def milli(numerator: int | Fraction, denominator: int | Fraction) -> int:
    """round(1000 x numerator / denominator), half up, exactly."""
    return _round_half_up(Fraction(numerator) * 1000 / Fraction(denominator))


def eccn_class(tpp: int, density: Fraction | None, datacenter: bool, rules: Rules) -> str:
    """ECCN 3A090 class of a chip. `density` None = die area unknown: only the TPP prongs can be applied."""
    if not datacenter and tpp < rules.note2_tpp_below:
        return NOT_3A090  # Note 2 to 3A090
    if tpp >= rules.a_tpp_min:
        return ECCN_A
    if density is None:
        return ECCN_UNKNOWN
    if tpp >= rules.a_density_tpp_min and density >= rules.a_pd_min:
        return ECCN_A
    if rules.b1_tpp_min <= tpp < rules.b1_tpp_below and rules.b1_pd_min <= density < rules.b_pd_below:
        return ECCN_B
    if tpp >= rules.b2_tpp_min and rules.b2_pd_min <= density < rules.b_pd_below:
        return ECCN_B
    return NOT_3A090


def classify(tpp: int, die_area_mm2: Fraction | None, datacenter: bool, rules: Rules) -> Classification:
    """Class, density and H100e of a chip with the given TPP and die area.

    A chip whose class depends on a density that cannot be computed (die area unknown, TPP between the density
    prong's floor and the plain TPP threshold) is classified 3A090.a, the controlled reading, and flagged.
    """
    if tpp < 0:
        raise ValueError("TPP cannot be negative")
    density = Fraction(tpp) / die_area_mm2 if die_area_mm2 else None
    eccn = eccn_class(tpp, density, datacenter, rules)
    review = ""
    if eccn == ECCN_UNKNOWN:
        if tpp >= rules.b2_tpp_min:
            eccn = ECCN_A
            review = "die area unknown: performance density cannot be computed; classified 3A090.a pending review"
        else:
            eccn = NOT_3A090
    return Classification(
        tpp=tpp,
        die_area_mm2=die_area_mm2,
        pd_milli=milli(tpp, die_area_mm2) if die_area_mm2 else None,
        eccn=eccn,
        h100e_milli=milli(tpp, rules.h100_reference_tpp),
        review=review,
    )


def derive_tpp(device: GpuDevice, rules: Rules) -> tuple[int | None, str]:
    """TPP estimated from NVML facts for a device the catalogue does not know, with the reason if impossible."""
    figures = rules.by_capability.get(device.cuda_compute_capability or "")
    if figures is None and device.architecture:
        figures = rules.by_architecture.get(device.architecture.lower())
    sm_count = device.sm_count
    per_sm = rules.cores_per_sm.get(device.cuda_compute_capability or "")
    if not sm_count and device.cuda_core_count and per_sm:
        sm_count = device.cuda_core_count // per_sm  # NVML often reports cores, not SMs, for a whole GPU
    missing = [
        name for name, value in (("sm_count", sm_count), ("max_sm_clock_mhz", device.max_sm_clock_mhz)) if not value
    ]
    if figures is None:
        known = device.cuda_compute_capability or device.architecture or "not reported"
        return None, f"no derivation figures for compute capability/architecture {known}"
    if missing:
        return None, f"cannot derive TPP: {', '.join(missing)} not reported"
    ops, bits = figures
    assert sm_count is not None and device.max_sm_clock_mhz is not None
    exact = Fraction(ops * sm_count * device.max_sm_clock_mhz * bits, 10**6) * (1 + rules.rounding_allowance)
    return -(-exact.numerator // exact.denominator), ""  # rounded up: a derived figure errs toward control


def derive_bandwidth_gbs(device: GpuDevice, rules: Rules) -> int | None:
    """DRAM bandwidth (GB/s) from NVML facts: bus width (bits) x max memory clock (MHz) x transfers per clock / 8000,
    rounded up (a rule's "below N GB/s" must not be met by rounding); None when a fact is missing."""
    if not device.memory_bus_width_bits or not device.max_memory_clock_mhz:
        return None
    bits_per_us = device.memory_bus_width_bits * device.max_memory_clock_mhz * rules.memory_transfers_per_clock
    return -(-bits_per_us // 8000)


def account_device(device: GpuDevice, catalogue: Catalogue, rules: Rules) -> Accounting:
    """A device's figures: from the catalogue when it knows the part, else derived from its facts and flagged."""
    accounting = _account(device, catalogue, rules)
    entry = catalogue.match(device.pci_device_id, device.name)
    if entry is not None and entry.dram_bandwidth_gbs is not None:
        return dataclasses.replace(accounting, dram_bandwidth_gbs=entry.dram_bandwidth_gbs, bandwidth_basis="catalogue")
    derived = derive_bandwidth_gbs(device, rules)
    if derived is None:
        return accounting
    return dataclasses.replace(accounting, dram_bandwidth_gbs=derived, bandwidth_basis=BASIS_DERIVED)


# The facts `account_device` reads (catalogue match, lost-device test, TPP and bandwidth derivation): two devices
# that agree on all of them get the same `Accounting`, whatever their index, UUID, serial or bus id.
ACCOUNTED_FACTS = ("pci_device_id", "name", "status", "cuda_compute_capability", "architecture", "sm_count",
                   "cuda_core_count", "max_sm_clock_mhz", "memory_bus_width_bits", "max_memory_clock_mhz")  # fmt: skip
DEFAULT_CACHE_SIZE = 1024  # distinct part/fact combinations: a fleet has a few dozen


class AccountingCache:
    """`account_device` with one catalogue and one set of rules, memoised on exactly the facts it reads
    (`ACCOUNTED_FACTS`, each with its type, so 1 and True never share an entry): a collector classifies the
    same eight GPUs of every node again and again, each time with exact `Fraction`s. Bounded (least recently
    used entry dropped first); an `Accounting` is immutable, so a cached one is shared safely. Not locked: a
    race only computes an entry twice (dict operations are atomic under the GIL)."""

    def __init__(self, catalogue: Catalogue, rules: Rules, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("the cache needs room for at least one entry")
        self.catalogue, self.rules, self.maxsize = catalogue, rules, maxsize
        self._entries: OrderedDict[tuple[Any, ...], Accounting] = OrderedDict()
        self.hits = self.misses = 0

    def __call__(self, device: GpuDevice) -> Accounting:
        key = tuple((type(value), value) for value in (getattr(device, name) for name in ACCOUNTED_FACTS))
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            try:
                self._entries.move_to_end(key)
            except KeyError:  # dropped by another thread meanwhile: still a right answer
                pass
            return found
        self.misses += 1
        accounting = account_device(device, self.catalogue, self.rules)
        self._entries[key] = accounting
        while len(self._entries) > self.maxsize:
            try:
                self._entries.popitem(last=False)
            except KeyError:
                break
        return accounting

    def __len__(self) -> int:
        return len(self._entries)


def _account(device: GpuDevice, catalogue: Catalogue, rules: Rules) -> Accounting:
    entry = catalogue.match(device.pci_device_id, device.name)
    if entry is not None and entry.tpp is not None:
        c = classify(entry.tpp, entry.die_area_mm2, entry.datacenter, rules)
        return Accounting(entry.id, BASIS_CATALOGUE, c.tpp, c.die_area_mm2, c.pd_milli, c.eccn, c.h100e_milli, c.review)
    if device.status == STATUS_LOST and not device.pci_device_id and not device.name:
        reason = "device lost before it could be identified"
        return Accounting("", BASIS_UNKNOWN, None, None, None, ECCN_UNKNOWN, None, reason)
    # A part the catalogue names without published figures is derived like an unknown one, under its own name.
    model, why = (entry.id, f"catalogue {entry.id}: figures not published") if entry else ("", "not in catalogue")
    tpp, reason = derive_tpp(device, rules)
    if tpp is None:
        return Accounting(model, BASIS_UNKNOWN, None, None, None, ECCN_UNKNOWN, None, f"{why}; {reason}")
    # Die area unknown, and data-centre use assumed (Note 2 is not applied to a part whose figures we lack).
    c = classify(tpp, None, True, rules)
    review = f"{why}: TPP derived from NVML facts (architecture, SM count, max SM clock)"
    if c.review:
        review = f"{review}; {c.review}"
    return Accounting(model, BASIS_DERIVED, c.tpp, None, None, c.eccn, c.h100e_milli, review)
