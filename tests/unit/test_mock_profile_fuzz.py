"""Property test: a mock profile is either refused as a ConfigError naming the key, or it yields a node whose
signed predicate the collector recomputes to the agent's own figures; never a traceback, never a statement the
collector would refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpucensus.agent.backends.mock import MockBackend
from gpucensus.agent.host import NodeInfo
from gpucensus.agent.snapshot import build_predicate
from gpucensus.collector.ingest.recompute import recompute
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.errors import ConfigError
from hypothesis import given
from hypothesis import strategies as st

CATALOGUE, RULES = load_catalogue(), load_rules()
FACTS = ("name", "pci_device_id", "pci_subsystem_id", "architecture", "cuda_compute_capability", "sm_count",
         "cuda_core_count", "max_sm_clock_mhz", "memory_total_bytes", "uuid", "error", "status")  # fmt: skip
VALUES = st.one_of(
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from((0, -1, 2**53 - 1, 2**53)),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(("0x2330", "2330", "0X2330", "0xZZ", "0x2_330", "9.0", "hopper", "lost", "\x1b[2J", "x" * 300)),
)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\' or ord(c) == 0x7F else c for c in str(value))
    return f'"{escaped}"'


@pytest.mark.fuzz
@given(
    model=st.sampled_from(("h100-sxm5", "engineering-sample-hopper", "l4")),
    overrides=st.dictionaries(st.sampled_from(FACTS), VALUES, max_size=3),
)
def test_a_profile_is_refused_or_yields_what_the_collector_accepts(
    tmp_path_factory: pytest.TempPathFactory, model: str, overrides: dict
) -> None:
    path: Path = tmp_path_factory.mktemp("profile") / "p.toml"
    lines = ["[[gpus]]", f'model = "{model}"', *(f"{k} = {_toml(v)}" for k, v in overrides.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        backend = MockBackend(str(path), node_id="n1")
    except ConfigError as err:
        assert str(path) in err.message
        return
    node = NodeInfo(id="n1", hostname="h", site="", boot_id="b")
    predicate = build_predicate(node, "mock", backend.discover(), backend.pci_functions(), CATALOGUE, RULES)
    result = recompute(predicate, CATALOGUE, RULES)  # raises MalformedFactError if the agent signed a bad fact
    assert "accounting.mismatch" not in {f.rule_id for f in result.findings}
