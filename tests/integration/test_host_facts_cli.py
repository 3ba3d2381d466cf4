"""`gpucensus-agent snapshot` carries host facts (issue 15): the mock backend simulates them, stable per node
across runs (as a restarted agent must report them) and different between nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

HOST_FACTS = {"cpu_logical", "cpu_physical", "memory_total_bytes", "boot_time"}


def _node(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "gpucensus.agent.cli", "snapshot", "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["node"]


def test_mock_host_facts_are_stable_across_runs_and_differ_between_nodes() -> None:
    first, again = _node("--backend", "mock", "--node-id", "n1"), _node("--backend", "mock", "--node-id", "n1")
    other = _node("--backend", "mock", "--node-id", "n2")
    assert HOST_FACTS <= set(first) and first["not_reported"] == []
    assert {k: first[k] for k in HOST_FACTS} == {k: again[k] for k in HOST_FACTS}
    assert first["boot_time"] != other["boot_time"]
    assert all(isinstance(first[k], int) and not isinstance(first[k], bool) for k in HOST_FACTS)
