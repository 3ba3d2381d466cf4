"""The accelerator catalogue: data packaged with the agent (`common/data/catalogue.json`), standard library only.

Lookup is by PCI device id first and NVML name second (docs/compliance.md, "Accounting"). Figures are kept
exact: TPP is an integer, the die area a `Fraction` parsed from its decimal string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any

from common.devices import PCI_DEVICE_ID
from common.errors import ConfigError


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    model: str
    vendor: str
    architecture: str
    datacenter: bool
    pci_device_ids: tuple[str, ...]
    nvml_names: tuple[str, ...]
    tpp: int
    die_area_mm2: Fraction | None
    tpp_basis: str


@dataclass(frozen=True)
class Catalogue:
    version: str
    entries: tuple[CatalogueEntry, ...]

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


def _entry(raw: dict[str, Any], where: str) -> CatalogueEntry:
    try:
        return CatalogueEntry(
            id=str(raw["id"]),
            model=str(raw["model"]),
            vendor=str(raw.get("vendor", "nvidia")),
            architecture=str(raw["architecture"]),
            datacenter=bool(raw["datacenter"]),
            pci_device_ids=tuple(normalize_device_id(d) for d in raw["pci_device_ids"]),
            nvml_names=tuple(raw.get("nvml_names", ())),
            tpp=int(raw["tpp"]),
            die_area_mm2=parse_decimal(raw.get("die_area_mm2"), f"{where}.die_area_mm2"),
            tpp_basis=str(raw.get("tpp_basis", "")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}: bad catalogue entry ({err!r})") from err


def parse_catalogue(document: dict[str, Any], source: str = "catalogue") -> Catalogue:
    entries = tuple(
        _entry(raw, f"{source}: accelerators[{i}]") for i, raw in enumerate(document.get("accelerators", []))
    )
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: duplicate catalogue ids")
    device_ids = [d for e in entries for d in e.pci_device_ids]
    if len(set(device_ids)) != len(device_ids):
        raise ConfigError(f"{source}: a PCI device id appears in two entries")
    return Catalogue(version=str(document.get("version", "")), entries=entries)


def load_catalogue() -> Catalogue:
    """The catalogue shipped with the package."""
    text = resources.files("common.data").joinpath("catalogue.json").read_text(encoding="utf-8")
    return parse_catalogue(json.loads(text), "common/data/catalogue.json")
