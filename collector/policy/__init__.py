"""Policy packs and their evaluation: `load_pack`, `load_scenario`, `evaluate` (pure), `render`."""

from __future__ import annotations

from gpucensus.collector.policy.evaluate import evaluate
from gpucensus.collector.policy.pack import Pack, builtin_names, load_pack
from gpucensus.collector.policy.result import Evaluation, Finding
from gpucensus.collector.policy.scenario import Scenario, load_scenario, parse_scenario

__all__ = [
    "Evaluation",
    "Finding",
    "Pack",
    "Scenario",
    "builtin_names",
    "evaluate",
    "load_pack",
    "load_scenario",
    "parse_scenario",
]
