"""Human-readable tables of the agent's output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gpucensus.common.safe_text import printable

if TYPE_CHECKING:
    from gpucensus.agent.spool import SpoolRow


def _h100e(milli: int | None) -> str:
    return "-" if milli is None else f"{milli / 1000:.2f}"


def snapshot_table(predicate: dict[str, Any]) -> str:
    """The predicate as a table; every string from the driver, the PCI bus or the host is `printable`."""
    node, driver, totals = predicate["node"], predicate["driver"], predicate["totals"]
    text = {k: printable(v) for k, v in driver.items()}
    lines = [
        printable(f"node {node['id']} ({node['hostname']})  site {node['site'] or '-'}"),
        f"driver {text.get('version', '?')}  NVML {text.get('nvml_version', '?')}  backend {text['backend']}"
        f"  library {text.get('library_path', '?')}",
        "",
        f"{'IDX':>3}  {'NAME':<26} {'PCI BUS':<17} {'MODEL':<15} {'TPP':>7} {'PD':>6} {'ECCN':<9} {'H100e':>6}"
        f"  {'STATUS':<10} NOTE",
    ]
    for d in predicate["devices"]:
        pd = "-" if "pd_milli" not in d else f"{d['pd_milli'] / 1000:.2f}"
        tpp = f"{d['tpp']:,}" if "tpp" in d else "?"
        mig = f"MIG {len(d['mig_instances'])} inst" if d["mig_instances"] else ""
        note = printable("; ".join(x for x in (mig, d["error"], d["review"]) if x))
        name, bus_id, model = printable(d.get("name", "?"))[:26], printable(d["pci"].get("bus_id", "?")), d["model"]
        lines.append(
            f"{d['index']:>3}  {name:<26} {bus_id:<17} "
            f"{printable(model or '-'):<15} {tpp:>7} {pd:>6} {d['eccn']:<9} {_h100e(d.get('h100e_milli')):>6}"
            f"  {d['status']:<10} {note}"
        )
    for p in predicate["pci_functions"]:
        if p["status"] != "matched":
            lines.append(
                printable(
                    f"  !  GPU on the PCI bus that NVML does not report: {p['bus_id']} device {p['device_id']} "
                    f"({p['model'] or 'unknown model'}, TPP {p.get('tpp', '?')})"
                )
            )
    lines += [
        "",
        f"total: {totals['gpus']} GPUs, {totals['tpp']:,} TPP, {totals['h100e_milli'] / 1000:.1f} H100e"
        + (f", {totals['unaccounted']} with unknown TPP" if totals["unaccounted"] else "")
        + (f", {totals['not_in_nvml']} not reported by NVML" if totals["not_in_nvml"] else ""),
    ]
    for eccn, bucket in totals["by_eccn"].items():
        lines.append(f"  {eccn:<10} {bucket['gpus']:>3} GPUs {bucket['tpp']:>12,} TPP")
    return "\n".join(lines)


def spool_table(path: str, rows: Sequence[SpoolRow], counts: Mapping[str, int]) -> str:
    """The spool's rows (sequence, state, log index, size, key id, reason) and the count per state."""
    lines = [f"spool {path}: " + ", ".join(f"{n} {state}" for state, n in counts.items()), ""]
    lines.append(f"{'SEQUENCE':>8}  {'STATE':<11} {'LOG INDEX':>9} {'BYTES':>7}  {'KEY':<16}  REASON")
    for r in rows:
        keyid, reason = printable(r.keyid[:16]), printable(r.error or "-")
        log_index = "-" if r.log_index is None else str(r.log_index)
        lines.append(f"{r.sequence:>8}  {r.state:<11} {log_index:>9} {r.size_bytes:>7}  {keyid:<16}  {reason}")
    if not rows:
        lines.append("(no envelopes)")
    return "\n".join(lines)
