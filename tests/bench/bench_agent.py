"""Agent benchmark (not part of the test suite): the agent's real loop (`gpucensus-agent run`: mock backend with
the 16-GPU profile `hgx-h100-16x`, snapshot, sign, spool, deliver over gRPC to a `gpucensus-collector serve`
subprocess, check the log's checkpoints) for N cycles in a process of its own, and in the same run a bare
process that imports every module the agent had imported except gpucensus's own.

Per run: CPU per cycle (process time of the agent process between the end of its first round and the end of
its last, divided by the cycles in between), the mock discovery's share of it (what NVML would cost: excluded
from the target), and the resident set (VmRSS) after the first cycle, the middle one and the last.

    python tests/bench/bench_agent.py [--cycles 1000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROFILE = "hgx-h100-16x"


def rss_mib() -> float:
    """The process's resident set now (not its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# --- the agent process ----------------------------------------------------------------------------------------
def agent_child(config: Path, cycles: int) -> dict[str, Any]:
    """Run `gpucensus-agent run --rounds N` in this process, timing its rounds from the inside."""
    from gpucensus.agent.backends.mock import MockBackend
    from gpucensus.agent.commands import run as run_command
    from gpucensus.agent.runner import Runner

    marks: list[tuple[int, float, float]] = []  # (round, process time, RSS MiB) after the round
    discovery = [0.0]
    round_of_runner, discover = Runner.round, MockBackend.discover

    def timed_round(self: Runner) -> None:
        round_of_runner(self)
        marks.append((self.rounds, time.process_time(), rss_mib()))

    def timed(call: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                discovery[0] += time.process_time() - start

        return wrapped

    Runner.round = timed_round  # type: ignore[method-assign]
    # what stands in for NVML: reading the profile (the mock's driver) and building the devices from it
    MockBackend.__init__ = timed(MockBackend.__init__)  # type: ignore[method-assign]
    MockBackend.discover = timed(discover)  # type: ignore[method-assign]
    args = argparse.Namespace(config=str(config), rounds=cycles, log_level="warning")
    for dest in run_command.FLAGS:
        setattr(args, dest, None)
    profile_to = os.environ.get("GPUCENSUS_BENCH_AGENT_PROFILE")  # a cProfile of the loop, to see what dominates
    if profile_to:
        import cProfile

        cProfile.runctx("run_command.handle(args)", globals(), {"run_command": run_command, "args": args}, profile_to)
    else:
        run_command.handle(args)
    end = time.process_time()
    first, middle, last = marks[0], marks[len(marks) // 2], marks[-1]
    per_cycle = (last[1] - first[1]) / max(1, last[0] - first[0])
    own = sorted(m for m in sys.modules if not m.startswith("gpucensus") and m != "__main__")
    return {
        "cycles": len(marks),
        "cpu_ms_per_cycle": 1e3 * per_cycle,
        "discovery_ms_per_cycle": 1e3 * discovery[0] / len(marks),
        "rss_mib": [first[2], middle[2], last[2]],
        "cpu_s_total": end,
        "modules": own,
    }


def bare_child(modules: list[str]) -> dict[str, Any]:
    """Import the given modules (those the agent had imported, gpucensus's own left out); the resident set."""
    import importlib

    failed = 0
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a private or platform module that cannot be imported by name: skipped
            failed += 1
    return {"rss_mib": rss_mib(), "modules": len(modules), "failed": failed}


# --- the parent: a collector, an enrolled agent, the two children ---------------------------------------------
def setup(work: Path) -> tuple[Any, Path]:
    """A collector subprocess (SQLite) with a site and an enrolment token; the agent's config file."""
    from gpucensus.collector.registry import new_token
    from gpucensus.collector.store import open_store
    from gpucensus.collector.store.base import Entity, Site

    from tests.bench.loadgen import Collector, utc_now

    data = work / "collector"
    data.mkdir()
    store = open_store("sqlite", data_dir=str(data))
    store.migrate()
    try:
        store.add_entity(Entity("bench", "US"))
        store.add_site(Site("bench-1", "US", "bench"))
        token, record = new_token("bench-1", utc_now(), timedelta(hours=2))
        store.add_token(record)
    finally:
        store.close()
    collector = Collector(work, f'[store]\nkind = "sqlite"\ndata_dir = "{data}"\n')
    state = work / "agent"
    state.mkdir()
    from gpucensus.agent.keys import generate_key

    generate_key(state / "node.key")
    config = state / "agent.toml"
    config.write_text(
        f'[collector]\naddress = "{collector.address}"\ntimeout_seconds = 10.0\n'
        f'[node]\nid = "bench-agent"\nsite = "bench-1"\nstate_dir = "{state}"\n'
        f'[enrollment]\ntoken = "{token}"\n'
        "[schedule]\ninterval_seconds = 0.001\njitter_fraction = 0.0\n"
        "[location]\ninterval_seconds = 0\n"
        f'[inventory]\nbackend = "mock"\nprofile = "{PROFILE}"\n',
        encoding="utf-8",
    )
    return collector, config


def _child(*argv: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), *argv], cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"bench child {argv[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def measure(cycles: int) -> dict[str, Any]:
    """One run: a fresh collector and agent, the agent child, then the bare child with the agent's modules."""
    with tempfile.TemporaryDirectory(prefix="gpucensus-bench-agent-") as tmp:
        collector, config = setup(Path(tmp))
        try:
            agent = _child("--agent", str(config), "--cycles", str(cycles))
        finally:
            collector.stop()
        modules = Path(tmp) / "modules.json"
        modules.write_text(json.dumps(agent.pop("modules")))
        bare = _child("--bare", str(modules))
    return {**agent, "bare_rss_mib": bare["rss_mib"], "bare_modules": bare["modules"], "bare_failed": bare["failed"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--agent", default=None, help=argparse.SUPPRESS)  # child: the agent's config file
    parser.add_argument("--bare", default=None, help=argparse.SUPPRESS)  # child: the modules to import
    args = parser.parse_args(argv)
    if args.agent:
        print(json.dumps(agent_child(Path(args.agent), args.cycles)))
        return 0
    if args.bare:
        print(json.dumps(bare_child(json.loads(Path(args.bare).read_text()))))
        return 0
    runs = [measure(args.cycles) for _ in range(args.repeat)]
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        for r in runs:
            start, middle, end = r["rss_mib"]
            print(f"{r['cycles']} cycles: {r['cpu_ms_per_cycle']:.2f} ms CPU/cycle (mock discovery "
                  f"{r['discovery_ms_per_cycle']:.2f}); RSS {start:.1f} / {middle:.1f} / {end:.1f} MiB; bare "
                  f"{r['bare_rss_mib']:.1f} MiB: {end / r['bare_rss_mib']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
