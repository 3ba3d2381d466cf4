"""Cross-node step: what one node's report means next to everything else the collector knows. Pure: the
store lookups are passed in as a `CrossnodeContext`.

- a GPU UUID that another node currently reports (the same board cannot sit in two machines);
- a GPU last seen in another country (it moved across a border: the caps of both countries change);
- a GPU that was on this node last time, is gone now and was not decommissioned
  (`gpucensus-collector gpu decommission`);
- a reboot (`host.rebooted`: boot time or boot id changed since the node's previous attestation) and a changed
  host fingerprint (`host.changed`: CPU counts or memory total changed): GPUs leave a host only across a reboot
  or a hot-unplug, so both explain (or question) a change in its GPUs;
- an NVIDIA function on the node's PCI bus that NVML did not report (a hidden GPU); the PCI entries passed in
  are the collector's own re-match of the node's PCI functions against its NVML devices (`recompute`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gpucensus.collector.ingest.facts import HostFacts
from gpucensus.collector.ingest.model import INFO, VIOLATION, WARNING, Finding

NOT_IN_NVML = "not-in-nvml"
BOOT_TIME_TOLERANCE_SECONDS = 60  # the kernel's boot time moves with clock corrections (NTP), not by minutes


@dataclass(frozen=True)
class Sighting:
    """Where a GPU UUID was last reported from."""

    node_id: str
    country: str


@dataclass(frozen=True)
class CrossnodeContext:
    """Store facts about this node's GPUs, looked up before the step runs."""

    previous_uuids: frozenset[str] = frozenset()  # in this node's last accepted attestation
    current_elsewhere: Mapping[str, tuple[Sighting, ...]] = field(default_factory=dict)  # other nodes now
    last_country: Mapping[str, str] = field(default_factory=dict)  # uuid -> country it was last seen in
    decommissioned: frozenset[str] = frozenset()


def device_uuids(devices: Iterable[Mapping]) -> list[str]:
    """The UUIDs in a predicate's device list, in order, skipping devices that did not report one."""
    return [d["uuid"] for d in devices if isinstance(d.get("uuid"), str) and d["uuid"]]


def check_crossnode(
    *,
    node_id: str,
    country: str,
    devices: Iterable[Mapping],
    pci_functions: Iterable[Mapping],
    context: CrossnodeContext,
) -> tuple[Finding, ...]:
    uuids = device_uuids(devices)
    findings: list[Finding] = []
    for uuid in uuids:
        for other in context.current_elsewhere.get(uuid, ()):
            findings.append(
                Finding(
                    "crossnode.duplicate-uuid",
                    VIOLATION,
                    f"gpu:{uuid}",
                    f"{uuid} is reported by node {node_id} and by node {other.node_id} ({other.country})",
                )
            )
        seen_in = context.last_country.get(uuid)
        if seen_in and country and seen_in != country:
            findings.append(
                Finding(
                    "crossnode.moved-country",
                    WARNING,
                    f"gpu:{uuid}",
                    f"{uuid} was last seen in {seen_in} and is now reported by node {node_id} in {country}",
                )
            )
    present = set(uuids)
    for uuid in sorted(context.previous_uuids - present - context.decommissioned):
        findings.append(
            Finding(
                "crossnode.disappeared",
                WARNING,
                f"gpu:{uuid}",
                f"{uuid} was on node {node_id} in its previous attestation and is missing now; "
                "it was not decommissioned (gpucensus-collector gpu decommission)",
            )
        )
    for function in pci_functions:
        if function.get("status") == NOT_IN_NVML:
            findings.append(
                Finding(
                    "crossnode.hidden-gpu",
                    VIOLATION,
                    f"node:{node_id}",
                    f"PCI function {function.get('bus_id', '?')} (device {function.get('device_id', '?')}) "
                    f"on node {node_id} is an NVIDIA GPU that NVML did not report",
                )
            )
    return tuple(findings)


def check_host(node_id: str, host: HostFacts, previous: HostFacts | None) -> tuple[Finding, ...]:
    """Findings on this node's host facts against those of its previous accepted attestation (None: no
    previous one, or it carried no host facts). A fact either side did not report is not compared."""
    if previous is None:
        return ()
    findings: list[Finding] = []
    subject = f"node:{node_id}"
    boot_moved = (
        host.boot_time is not None
        and previous.boot_time is not None
        and abs(host.boot_time - previous.boot_time) > BOOT_TIME_TOLERANCE_SECONDS
    )
    boot_id_changed = bool(host.boot_id and previous.boot_id and host.boot_id != previous.boot_id)
    if boot_moved or boot_id_changed:
        when = f" (boot time {previous.boot_time} -> {host.boot_time})" if boot_moved else " (new boot id)"
        findings.append(Finding("host.rebooted", INFO, subject, f"node {node_id} rebooted{when}"))
    before, now = previous.fingerprint, host.fingerprint
    compared = sorted(name for name in before if name in now and before[name] != now[name])
    changed = [f"{name} {before[name]} -> {now[name]}" for name in compared]
    if changed:
        findings.append(
            Finding(
                "host.changed",
                WARNING,
                subject,
                f"the host of node {node_id} changed since its previous attestation: " + ", ".join(changed),
            )
        )
    return tuple(findings)
