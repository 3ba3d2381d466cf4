"""What `gpucensus-audit verify` prints: one `FAIL` line per failure (or a JSON document), then one summary line."""

from __future__ import annotations

import json
from pathlib import Path

from gpucensus.collector.audit.check_bundle import BundleReport
from gpucensus.common.safe_text import printable
from gpucensus.common.verify import Failure, VerifiedStatement


def _failure_dicts(failures: list[Failure]) -> list[dict]:
    return [{"source": f.source, "sequence": f.sequence, "reason": f.reason, "message": f.message} for f in failures]


def report_files(verified: list[VerifiedStatement], failures: list[Failure], total: int, fmt: str) -> None:
    if fmt == "json":
        document = {
            "ok": not failures,
            "envelopes": total,
            "verified": [
                {"source": v.source, "keyid": v.keyid, "node": v.node_id, "sequence": v.sequence, "digest": v.digest}
                for v in verified
            ],
            "failures": _failure_dicts(failures),
        }
        print(json.dumps(document, indent=2))
        return
    for failure in failures:
        print(f"FAIL {printable(failure)}")
    nodes = sorted({printable(v.node_id) for v in verified})
    if failures:
        print(f"{len(failures)} failure(s); {len(verified)} of {total} envelope(s) verified individually")
    else:
        sequences = sorted(v.sequence for v in verified)
        print(
            f"OK {total} envelope(s) from {len(nodes)} node(s) ({', '.join(nodes)}), sequences "
            f"{sequences[0]}..{sequences[-1]}: signatures, statements and chains hold"
        )


def report_bundle(directory: Path, report: BundleReport, total: int, fmt: str) -> None:
    checkpoint = report.checkpoint
    if fmt == "json":
        document = {
            "ok": not report.failures,
            "bundle": str(directory),
            "checkpoint": {"origin": checkpoint.origin, "size": checkpoint.size} if checkpoint else None,
            "envelopes": total,
            "verified": len(report.verified),
            "notes": report.notes,
            "failures": _failure_dicts(report.failures),
        }
        print(json.dumps(document, indent=2))
        return
    for failure in report.failures:
        print(f"FAIL {printable(failure)}")
    for line in report.notes:
        print(f"NOTE {printable(line)}")
    if report.failures:
        print(f"{len(report.failures)} failure(s) in bundle {printable(directory)}")
    else:
        nodes = len({v.node_id for v in report.verified})
        print(f"OK bundle {printable(directory)}: checkpoint {printable(checkpoint.origin)} size {checkpoint.size}, "
              f"{total} envelope(s) from {nodes} node(s): checkpoint signature, inclusion proofs, signatures, "
              "chains and figures hold")  # fmt: skip
