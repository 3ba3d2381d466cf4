"""Continuous-compliance benchmark (not part of the test suite; `make bench`): what the policy evaluation adds to
each accepted envelope. A SQLite store holds a background fleet (`--nodes` nodes of 8 H100s in `--sites` sites
over `--countries` countries, written directly); then real signed envelopes from `--measured` more nodes go
through the real ingest pipeline with the compliance hook, twice: round 1 changes each node's inventory (the
incremental re-evaluation of its site's country and entity runs), round 2 repeats it (one comparison). Reported:
the mean seconds of the `compliance` step against the other steps of the same envelopes, and one full
re-evaluation of the fleet (what a registry change costs, and what the incremental path avoids per envelope).

    python tests/bench/bench_compliance.py [--nodes 2000] [--sites 100] [--countries 20] [--measured 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script by `make bench`
    sys.path.insert(0, str(ROOT))

from gpucensus.collector.compliance.state import ComplianceState  # noqa: E402
from gpucensus.collector.ingest.pipeline import STEPS, Pipeline, StepTimings  # noqa: E402
from gpucensus.collector.policy import load_pack  # noqa: E402
from gpucensus.collector.store import open_store  # noqa: E402
from gpucensus.collector.store.base import AttestationRecord, DeviceRecord, Entity, Site  # noqa: E402
from gpucensus.common.accounting import load_rules  # noqa: E402
from gpucensus.common.catalogue import load_catalogue  # noqa: E402

from tests.ingest_nodes import NOW, TestNode, enroll  # noqa: E402

COUNTRIES = ("AE", "IN", "SA", "BR", "MX", "PL", "IL", "ID", "MY", "TH", "VN", "PH", "EG", "TR", "ZA", "AR", "CL",
             "US", "DE", "JP")  # fmt: skip
H100 = {"model": "h100-sxm5", "basis": "catalogue", "tpp": 15832, "eccn": "3A090.a", "die_area_mm2": "814"}


def background(store, nodes: int, sites: int, countries: int) -> None:
    for e in range(10):
        store.add_entity(Entity(f"ent{e}", "US", ("none", "uveu", "nveu")[e % 3]))
    for s in range(sites):
        store.add_site(Site(f"site{s}", COUNTRIES[s % countries], f"ent{s % 10}"))
    for n in range(nodes):
        node, site = f"bg{n}", f"site{n % sites}"
        store.preregister_node(f"k-{node}", "PEM", node, site, NOW, "bench")
        devices = tuple(DeviceRecord(f"GPU-{node}-{i}", i, **H100) for i in range(8))  # type: ignore[arg-type]
        store.store_attestation(AttestationRecord(f"k-{node}", 1, f"d-{node}", b"{}", node, site, NOW, NOW,
                                                  devices=devices))  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store("sqlite", data_dir=tmp)
        background(store, args.nodes, args.sites, args.countries)
        state = ComplianceState(store, load_pack("ai-diffusion-2025"), load_catalogue(), load_rules(),
                                clock=lambda: NOW, refresh_seconds=0)  # fmt: skip
        start = time.perf_counter()
        state.refresh()
        full_seconds = time.perf_counter() - start
        nodes = [TestNode(f"m{i}") for i in range(args.measured)]
        for i, node in enumerate(nodes):
            enroll(store, node, site=f"site{i % args.sites}", country=COUNTRIES[i % args.countries])
        state.refresh()  # the registry moved (enrollments of new sites' tokens do not; a site add does)
        pipeline = Pipeline(store, clock=lambda: NOW + timedelta(minutes=5), compliance=state)
        rounds = {}
        for name in ("changed", "unchanged"):
            pipeline.timings = timings = StepTimings()
            for node in nodes:
                pipeline.ingest(node.next())
            per = {step: timings.seconds[step] / timings.envelopes for step in STEPS}
            others = sum(v for k, v in per.items() if k != "compliance")
            rounds[name] = {"envelopes": timings.envelopes, "compliance_seconds": per["compliance"],
                            "other_steps_seconds": others, "ratio": per["compliance"] / others}  # fmt: skip
        store.close()
    return {"fleet_nodes": args.nodes + args.measured, "sites": args.sites, "countries": args.countries,
            "full_refresh_seconds": full_seconds, **rounds}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--countries", type=int, default=20)
    parser.add_argument("--measured", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"fleet: {result['fleet_nodes']} nodes of 8 H100, {args.sites} sites, {args.countries} countries (SQLite)")
    print(f"full re-evaluation (registry change, start-up): {result['full_refresh_seconds'] * 1000:.1f} ms")
    for name in ("changed", "unchanged"):
        r = result[name]
        print(f"{name:>9} inventory: compliance step {r['compliance_seconds'] * 1e6:9.1f} us per envelope, "
              f"other steps {r['other_steps_seconds'] * 1e6:9.1f} us ({r['ratio']:.2f} x), "
              f"{r['envelopes']} envelopes")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
