"""Output of an evaluation: JSON (the issue's contract), CSV (one flat table), a text table; and the compare view.

Exact values are converted here, and only here, to display values: TPP stays an integer, shares and
utilization become floats rounded for reading (the verdicts were decided exactly before this point).
"""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from typing import Any

from gpucensus.collector.policy.result import Evaluation, Finding, percent
from gpucensus.common.safe_text import csv_cell, printable

FORMATS = ("table", "json", "csv")


def _num(value: int | Fraction | None, digits: int = 6) -> int | float | None:
    if value is None or isinstance(value, int):
        return value
    return round(float(value), digits)


def _h100e(tpp: int, ref: int) -> float:
    return round(tpp / ref, 2)


def finding_dict(f: Finding) -> dict[str, Any]:
    """A finding's value and limit unrounded (a share as the nearest float): rounding could put a value that is
    below its limit onto it."""
    return {"severity": f.severity, "rule": f.rule, "subject": f.subject, "message": f.message,
            "value": _exact(f.value), "limit": _exact(f.limit)}  # fmt: skip


def _exact(value: int | Fraction | None) -> int | float | None:
    return value if value is None or isinstance(value, int) else float(value)


def to_dict(ev: Evaluation) -> dict[str, Any]:
    ref = ev.h100_reference_tpp
    return {
        "policy": ev.policy,
        "as_of": ev.as_of.isoformat(),
        "countries": [
            {"country": c.country, "tier": c.tier, "tpp": c.tpp, "h100e": _h100e(c.tpp, ref),
             "allocation_tpp": c.allocation_tpp, "allocation_used_tpp": c.allocation_used_tpp,
             "utilization": (round(c.allocation_used_tpp / c.allocation_tpp, 4)
                             if c.allocation_tpp and c.allocation_used_tpp is not None else None),
             "status": c.status}
            for c in ev.countries
        ],
        "entities": [
            {"id": e.id, "authorization": e.authorization, "headquarters": e.headquarters, "tpp": e.tpp,
             "h100e": _h100e(e.tpp, ref),
             "shares": ({"tier1": _num(e.shares["tier1"], 4),
                         "by_country": {k: _num(v, 4) for k, v in e.shares["by_country"].items()}}
                        if e.shares else {}),
             "status": e.status}
            for e in ev.entities
        ],
        "sites": [
            {"id": s.id, "country": s.country, "entity": s.entity, "tier": s.tier, "gpus": s.gpus, "tpp": s.tpp,
             "h100e": _h100e(s.tpp, ref), "unknown": s.unknown, "status": s.status,
             "devices": [{"model": d.model, "count": d.count, "tpp": d.tpp, "eccn": d.eccn, "basis": d.basis,
                          "counted": d.counted, "acquired": d.acquired.isoformat() if d.acquired else None}
                         for d in s.devices]}
            for s in ev.sites
        ],
        "findings": [finding_dict(f) for f in ev.findings],
        "summary": {"violations": ev.count("violation"), "warnings": ev.count("warning"),
                    "compliant": ev.compliant},
    }  # fmt: skip


def render(ev: Evaluation, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_dict(ev), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _csv(to_dict(ev))
    return _table(ev)


CSV_COLUMNS = ("record", "id", "country", "tier", "entity", "authorization", "headquarters", "tpp", "h100e",
               "allocation_tpp", "allocation_used_tpp", "utilization", "status", "severity", "rule", "subject",
               "message", "value", "limit")  # fmt: skip


def _csv(doc: dict[str, Any]) -> str:
    """One flat table: a row per country, entity, site and finding; `record` tells which."""
    out = io.StringIO()
    w = csv_writer(out)
    w.writeheader()
    for c in doc["countries"]:
        w.writerow({"record": "country", "id": c["country"], **c})
    for e in doc["entities"]:
        w.writerow({"record": "entity", **e, "entity": e["id"]})
    for s in doc["sites"]:
        w.writerow({"record": "site", **s})
    for f in doc["findings"]:
        w.writerow({"record": "finding", **f})
    return out.getvalue()


class SafeDictWriter(csv.DictWriter):
    """A DictWriter whose text cells go through `csv_cell` (control characters escaped, formulas neutralised)."""

    def writerow(self, rowdict: Any) -> Any:
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})


def csv_writer(out: io.StringIO) -> csv.DictWriter:
    """The CSV writer of every CSV table: CSV_COLUMNS, unknown keys ignored, safe cells."""
    return SafeDictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")


def grid(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned text columns; every cell `printable` (a value cannot carry a control sequence or a line break)."""
    header, rows = [printable(c) for c in header], [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]


def int_text(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _table(ev: Evaluation) -> str:
    ref = ev.h100_reference_tpp
    p = ev.policy
    lines = [printable(f"policy {p['name']} ({p['status']}): {p['title']}"), f"as of {ev.as_of.isoformat()}", ""]
    lines += grid(
        ["COUNTRY", "TIER", "TPP", "H100E", "ALLOCATION", "USED", "UTIL", "STATUS"],
        [[c.country, str(c.tier), int_text(c.tpp), f"{c.tpp / ref:,.1f}", int_text(c.allocation_tpp),
          int_text(c.allocation_used_tpp),
          utilization_text(c.allocation_used_tpp, c.allocation_tpp), c.status]
         for c in ev.countries],
    )  # fmt: skip
    lines.append("")
    lines += grid(
        ["ENTITY", "AUTH", "HQ", "TPP", "H100E", "TIER1 SHARE", "STATUS"],
        [[e.id, e.authorization, e.headquarters, int_text(e.tpp), f"{e.tpp / ref:,.1f}",
          percent(e.shares["tier1"]) if e.shares else "-", e.status] for e in ev.entities],
    )  # fmt: skip
    lines.append("")
    lines += grid(
        ["SITE", "COUNTRY", "ENTITY", "GPUS", "COUNTED TPP", "UNKNOWN", "STATUS"],
        [[s.id, s.country, s.entity, str(s.gpus), int_text(s.tpp), str(s.unknown), s.status] for s in ev.sites],
    )
    lines += ["", "findings:" if ev.findings else "findings: none"]
    lines += finding_lines([finding_dict(f) for f in ev.findings])
    lines += ["", summary_line(ev)]
    return "\n".join(lines) + "\n"


def utilization_text(used: int | None, allocation: int | None) -> str:
    """'93.39 %'; never '100 %' for a value over the allocation (display rounding)."""
    if not allocation or used is None:
        return "-"
    text = percent(Fraction(used, allocation))
    return "> 100 %" if used > allocation and text == "100 %" else text


def finding_lines(findings: list[dict[str, Any]]) -> list[str]:
    """Findings as aligned text lines: severity, rule, subject, message (each `printable`)."""
    if not findings:
        return []
    findings = [{k: printable(f[k]) for k in ("severity", "rule", "subject", "message")} for f in findings]
    rule = max(len(f["rule"]) for f in findings)
    subject = max(len(f["subject"]) for f in findings)
    return [f"  {f['severity']:<9}  {f['rule']:<{rule}}  {f['subject']:<{subject}}  {f['message']}" for f in findings]


def summary_line(ev: Evaluation) -> str:
    verdict = "compliant" if ev.compliant else "NOT compliant"
    name = printable(ev.policy["name"])
    return f"{name}: {ev.count('violation')} violation(s), {ev.count('warning')} warning(s): {verdict}"
