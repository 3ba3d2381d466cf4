"""The live report: a policy evaluation of the store's inventory, plus stale nodes and the ingest findings.

Pure rendering: the command passes in the evaluation(s), the stale nodes and the stored findings (store
dataclasses, read by attribute), and the time of the report.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

from gpucensus.collector.policy.compare import compare_dict, render_compare
from gpucensus.collector.policy.render import csv_writer, finding_lines, render, to_dict
from gpucensus.collector.policy.result import Evaluation
from gpucensus.common.safe_text import printable


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def stale_dict(node: Any, now: datetime) -> dict[str, Any]:
    since = node.last_attested_at or node.enrolled_at
    return {"node_id": node.node_id, "site": node.site, "keyid": node.keyid,
            "last_attested_at": _when(node.last_attested_at), "interval_seconds": node.interval_seconds,
            "silent_seconds": int((now - since).total_seconds())}  # fmt: skip


def ingest_dict(f: Any) -> dict[str, Any]:
    return {"severity": f.severity, "rule": f.rule_id, "subject": f.subject, "message": f.message,
            "created_at": _when(f.created_at)}  # fmt: skip


def render_report(
    ev: Evaluation,
    other: Evaluation | None,
    stale: list[Any],
    ingest: list[Any],
    now: datetime,
    fmt: str,
    locations: list[dict[str, Any]] | None = None,
) -> str:
    """`locations`: each site's location status (`collector.location.status.location_rows`), None when no
    landmark is registered (location evidence not in use: nothing is shown)."""
    stale_rows = [stale_dict(n, now) for n in stale]
    ingest_rows = [ingest_dict(f) for f in ingest]
    if fmt == "json":
        doc = to_dict(ev) if other is None else compare_dict(ev, other)
        doc.update(generated_at=_when(now), stale_nodes=stale_rows, ingest_findings=ingest_rows)
        if locations is not None:
            doc["site_locations"] = locations
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    head = render(ev, fmt) if other is None else render_compare(ev, other, fmt)
    if fmt == "csv":
        out = io.StringIO()
        w = csv_writer(out)
        for n in stale_rows:
            w.writerow({"record": "stale-node", "id": n["node_id"], "subject": f"node:{n['node_id']}",
                        "severity": "warning", "rule": "node.stale",
                        "message": f"site {n['site']}: silent for {n['silent_seconds']} s"})  # fmt: skip
        for f in ingest_rows:
            w.writerow({"record": "ingest-finding", **f})
        for loc in locations or []:
            w.writerow({"record": "site-location", "id": loc["site"], "subject": f"site:{loc['site']}",
                        "message": f"location {loc['status']}"})  # fmt: skip
        return head + (out.getvalue() if other is None else "")  # the compare CSV has its own columns
    lines = ["", f"stale nodes (report at {_when(now)}):" if stale_rows else "stale nodes: none"]
    lines += [f"  {printable(n['node_id']):<20} site {printable(n['site']):<14} "
              f"last attested {n['last_attested_at'] or 'never'}, "
              f"silent {n['silent_seconds']} s" for n in stale_rows]  # fmt: skip
    if locations is not None:
        lines += ["", "site locations (worst node first; docs/compliance.md):"]
        lines += [f"  {printable(loc['site']):<20} {loc['status']:<12} "
                  + ", ".join(f"{printable(n['node_id'])} {n['status']}" for n in loc["nodes"])
                  for loc in locations]  # fmt: skip
    lines += ["", "ingest findings (newest first):" if ingest_rows else "ingest findings: none"]
    lines += finding_lines(ingest_rows)
    return head + "\n".join(lines) + "\n"
