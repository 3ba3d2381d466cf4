"""The `--compare` view: the same scenario under two packs; per country and entity, how the verdict changes."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from gpucensus.collector.policy.render import finding_lines, grid, int_text, summary_line, to_dict
from gpucensus.collector.policy.result import Evaluation
from gpucensus.common.safe_text import csv_cell, printable


def compare_dict(a: Evaluation, b: Evaluation) -> dict[str, Any]:
    ca = {c.country: c for c in a.countries}
    cb = {c.country: c for c in b.countries}
    countries = []
    for cc in sorted(ca.keys() | cb.keys()):
        x, y = ca[cc], cb[cc]
        countries.append({
            "country": cc, "tier": [x.tier, y.tier], "status": [x.status, y.status],
            "allocation_tpp": [x.allocation_tpp, y.allocation_tpp],
            "allocation_used_tpp": [x.allocation_used_tpp, y.allocation_used_tpp],
            "changed": (x.tier, x.status, x.allocation_used_tpp) != (y.tier, y.status, y.allocation_used_tpp),
        })  # fmt: skip
    ea = {e.id: e for e in a.entities}
    eb = {e.id: e for e in b.entities}
    entities = [
        {"id": i, "authorization": ea[i].authorization, "status": [ea[i].status, eb[i].status],
         "changed": ea[i].status != eb[i].status}
        for i in sorted(ea)
    ]  # fmt: skip
    da, db = to_dict(a), to_dict(b)
    keys_a = {_key(f) for f in da["findings"]}
    keys_b = {_key(f) for f in db["findings"]}
    return {
        "as_of": a.as_of.isoformat(),
        "policies": [a.policy, b.policy],
        "countries": countries,
        "entities": entities,
        "findings_differing": [
            [f for f in da["findings"] if _key(f) not in keys_b],
            [f for f in db["findings"] if _key(f) not in keys_a],
        ],
        "summary": [da["summary"], db["summary"]],
        "evaluations": [da, db],
    }


def _key(finding: dict[str, Any]) -> tuple[Any, ...]:
    """Two findings are the same when rule, subject, severity and numbers agree (messages name the pack's terms)."""
    return (finding["severity"], finding["rule"], finding["subject"], finding["value"], finding["limit"])


def render_compare(a: Evaluation, b: Evaluation, fmt: str) -> str:
    doc = compare_dict(a, b)
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["record", "id", "tier_a", "tier_b", "status_a", "status_b", "changed"])
        for c in doc["countries"]:
            w.writerow([csv_cell(v) for v in ["country", c["country"], *c["tier"], *c["status"], c["changed"]]])
        for e in doc["entities"]:
            w.writerow([csv_cell(v) for v in ["entity", e["id"], "", "", *e["status"], e["changed"]]])
        return out.getvalue()
    na, nb = printable(a.policy["name"]), printable(b.policy["name"])
    lines = [f"compare {na} -> {nb}, as of {doc['as_of']}", ""]
    lines += grid(
        ["COUNTRY", "TIER", f"STATUS {na}", f"STATUS {nb}", "ALLOCATION USED", "CHANGED"],
        [[c["country"], "{} -> {}".format(*c["tier"]), *c["status"],
          "{} -> {}".format(*(int_text(v) for v in c["allocation_used_tpp"])), "yes" if c["changed"] else ""]
         for c in doc["countries"]],
    )  # fmt: skip
    lines.append("")
    lines += grid(
        ["ENTITY", "AUTH", f"STATUS {na}", f"STATUS {nb}", "CHANGED"],
        [[e["id"], e["authorization"], *e["status"], "yes" if e["changed"] else ""] for e in doc["entities"]],
    )
    for name, only in zip((na, nb), doc["findings_differing"], strict=True):
        title = f"findings only under {name} (or with other numbers)"
        lines += ["", f"{title}:" if only else f"{title}: none"]
        lines += finding_lines(only)
    lines += ["", summary_line(a), summary_line(b)]
    return "\n".join(lines) + "\n"
