"""The accelerator catalogue: data packaged with the agent (`common/data/catalogue.json`), standard library only.

Lookup is by PCI device id first and NVML name second (docs/compliance.md, "Accounting"). Figures are kept
exact: TPP is an integer, the die area a `Fraction` parsed from its decimal string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from typing import Any

from gpucensus.common.devices import PCI_DEVICE_ID
from gpucensus.common.errors import ConfigError


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    model: str
    vendor: str
    architecture: str
    datacenter: bool
    pci_device_ids: tuple[str, ...]
    nvml_names: tuple[str, ...]
    tpp: int | None  # None = figures not published: account the device from its NVML facts (see `review`)
    die_area_mm2: Fraction | None
    tpp_basis: str
    eccn: str = ""  # the class the catalogue states (tests check it against the thresholds)
    dense_peaks: dict[str, Fraction] = field(default_factory=dict)  # precision -> dense TFLOPS/TOPS
    dram_bandwidth_gbs: int | None = None  # datasheet DRAM bandwidth, GB/s; None = not published
    compute_capability: str | None = None
    sm_count: int | None = None
    boost_clock_mhz: int | None = None
    sources: tuple[str, ...] = ()
    review: str = ""  # what could not be confirmed against a primary source ("" = nothing)


@dataclass(frozen=True)
class Catalogue:
    version: str
    entries: tuple[CatalogueEntry, ...]
    bit_lengths: dict[str, int] = field(default_factory=dict)  # precision -> bits, for `dense_peaks`
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {"citation", "url"}

    def by_id(self, entry_id: str) -> CatalogueEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def match(self, pci_device_id: str | None, name: str | None) -> CatalogueEntry | None:
        """The entry for a device: PCI device id first, NVML name second; None when unknown."""
        if pci_device_id:
            wanted = normalize_device_id(pci_device_id)
            for entry in self.entries:
                if wanted in entry.pci_device_ids:
                    return entry
        if name:
            wanted_name = name.strip().casefold()
            for entry in self.entries:
                if wanted_name in (n.casefold() for n in entry.nvml_names):
                    return entry
        return None


def normalize_device_id(device_id: str) -> str:
    """'0x2330', '2330', '0X2330' -> '0x2330' (lower-case, 4 hex digits); ValueError if it is not a hex PCI id."""
    text = device_id.strip() if isinstance(device_id, str) else ""
    if not PCI_DEVICE_ID.fullmatch(text):
        raise ValueError(f"not a hex PCI device id: {device_id!r}")
    return f"0x{int(text.lower().removeprefix('0x'), 16):04x}"


_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
MAX_DECIMAL_TEXT = 64


def exact_decimal(text: str) -> Fraction:
    """A plain decimal ('608.5', '0.75', '-1') as an exact `Fraction`; ValueError for anything else. `Fraction`
    itself would also take '1e999999999' and spend hours expanding the exponent: a hostile file is not a hang."""
    if not isinstance(text, str) or len(text) > MAX_DECIMAL_TEXT or not _DECIMAL.fullmatch(text.strip()):
        raise ValueError(f"not a plain decimal number: {text!r}"[:100])
    return Fraction(text.strip())


def parse_decimal(value: Any, where: str) -> Fraction | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"{where}: expected a decimal string, got {value!r}")
    try:
        result = exact_decimal(str(value))
    except ValueError as err:
        raise ConfigError(f"{where}: not a decimal number: {value!r}") from err
    if result <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return result


def _optional_int(raw: dict[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}.{key}: expected a positive integer, got {value!r}")
    return value


def _peaks(raw: dict[str, Any], bit_lengths: dict[str, int], where: str) -> dict[str, Fraction]:
    peaks = raw.get("dense_peaks", {})
    if not isinstance(peaks, dict):
        raise ConfigError(f"{where}.dense_peaks: expected an object of precision -> decimal string")
    out = {}
    for precision, value in peaks.items():
        if precision not in bit_lengths:
            raise ConfigError(f"{where}.dense_peaks: unknown precision {precision!r} (not in bit_lengths)")
        figure = parse_decimal(value, f"{where}.dense_peaks.{precision}")
        assert figure is not None
        out[precision] = figure
    return out


def _entry(raw: dict[str, Any], where: str, bit_lengths: dict[str, int], sources: set[str]) -> CatalogueEntry:
    cited = tuple(str(s) for s in raw.get("sources", ()))
    unknown = sorted(set(cited) - sources)
    if unknown:
        raise ConfigError(f"{where}.sources: {unknown[0]!r} is not in the catalogue's sources table")
    try:
        tpp = raw["tpp"]
        return CatalogueEntry(
            id=str(raw["id"]),
            model=str(raw["model"]),
            vendor=str(raw.get("vendor", "nvidia")),
            architecture=str(raw["architecture"]),
            datacenter=bool(raw["datacenter"]),
            pci_device_ids=tuple(normalize_device_id(d) for d in raw["pci_device_ids"]),
            nvml_names=tuple(raw.get("nvml_names", ())),
            tpp=None if tpp is None else int(tpp),
            die_area_mm2=parse_decimal(raw.get("die_area_mm2"), f"{where}.die_area_mm2"),
            tpp_basis=str(raw.get("tpp_basis", "")),
            eccn=str(raw.get("eccn", "")),
            dense_peaks=_peaks(raw, bit_lengths, where),
            dram_bandwidth_gbs=_optional_int(raw, "dram_bandwidth_gbs", where),
            compute_capability=None if raw.get("compute_capability") is None else str(raw["compute_capability"]),
            sm_count=_optional_int(raw, "sm_count", where),
            boost_clock_mhz=_optional_int(raw, "boost_clock_mhz", where),
            sources=cited,
            review=str(raw.get("review", "")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}: bad catalogue entry ({err!r})") from err


def parse_catalogue(document: dict[str, Any], source: str = "catalogue") -> Catalogue:
    bit_lengths = {str(k): int(v) for k, v in document.get("bit_lengths", {}).items()}
    sources = {str(k): dict(v) for k, v in document.get("sources", {}).items()}
    entries = tuple(
        _entry(raw, f"{source}: accelerators[{i}]", bit_lengths, set(sources))
        for i, raw in enumerate(document.get("accelerators", []))
    )
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: duplicate catalogue ids")
    device_ids = [d for e in entries for d in e.pci_device_ids]
    if len(set(device_ids)) != len(device_ids):
        raise ConfigError(f"{source}: a PCI device id appears in two entries")
    return Catalogue(str(document.get("version", "")), entries, bit_lengths, sources)


def load_catalogue() -> Catalogue:
    """The catalogue shipped with the package."""
    text = resources.files("gpucensus.common.data").joinpath("catalogue.json").read_text(encoding="utf-8")
    return parse_catalogue(json.loads(text), "common/data/catalogue.json")
