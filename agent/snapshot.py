"""The snapshot predicate of this node: its facts, its driver, and the inventory `common.inventory` computes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gpucensus.agent.host import HostFacts, NodeInfo
from gpucensus.common.accounting import Rules
from gpucensus.common.catalogue import Catalogue
from gpucensus.common.devices import Discovery, PciFunction
from gpucensus.common.inventory import device_entry, pci_entries, totals


def build_predicate(
    node: NodeInfo,
    backend_name: str,
    discovery: Discovery,
    pci_functions: list[PciFunction],
    catalogue: Catalogue,
    rules: Rules,
    host: HostFacts | None = None,
) -> dict[str, Any]:
    """The snapshot predicate for this node (the JSON contract of `gpucensus-agent snapshot`). `host`: the host
    facts (None: all of them not reported)."""
    devices = sorted(discovery.devices, key=lambda d: d.index)
    device_entries = [device_entry(d, catalogue, rules) for d in devices]
    pci = pci_entries(pci_functions, devices, catalogue, rules)
    driver = {k: v for k, v in asdict(discovery.driver).items() if v is not None}
    driver["backend"] = backend_name
    return {
        "node": {**asdict(node), **(host or HostFacts()).node_fields()},
        "driver": driver,
        "devices": device_entries,
        "pci_functions": pci,
        "totals": totals(device_entries, pci),
    }
