"""Property tests: hostile scenario and policy-pack documents get the loaders' documented error, a
`ConfigError` naming the file (exit 2 from the CLI), and nothing else: no other exception, no hang."""

from __future__ import annotations

import copy
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy.pack import Pack, builtin_names, parse_pack, parse_pack_document
from gpucensus.collector.policy.scenario import Scenario, load_scenario, parse_scenario
from hypothesis import given
from hypothesis import strategies as st

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "scenarios"
SCENARIOS = [
    json.loads((DEPLOY / "worked-example.json").read_text()),
    tomllib.loads((DEPLOY / "small.toml").read_text()),
]
PACKS = [
    tomllib.loads(
        resources.files("gpucensus.collector.policy.packs").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    )
    for name in builtin_names()
]

ODD_TEXT = ("", "DE", "de", "XX", "2026-02-30", "2026-06-30", "0.75", "-0.5", "1e400", "1/0", "0/0", "nan", "inf",
            "h100-sxm5", "uveu", "in-force", "3A090.a", "\x00", "\ud800", "x" * 2000)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from((0, -1, 1, 2, 3, 2**63, -(2**63), 10**300)),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(ODD_TEXT),
    st.dates().map(lambda d: d.isoformat()),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a document (dict keys and list indexes)."""
    out = [prefix]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.extend(_paths(child, (*prefix, key)))
    return out


def _mutated(data: st.DataObject, doc: dict[str, Any]) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="rounds")):
        path = data.draw(st.sampled_from(_paths(doc)), label="path")
        if not path:
            return data.draw(VALUES, label="whole document")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(("replace", "delete", "add")), label="action")
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][data.draw(st.text(max_size=8), label="new key")] = data.draw(VALUES, label="value")
        elif action == "add" and isinstance(parent[path[-1]], list):
            parent[path[-1]].append(data.draw(VALUES, label="item"))
        else:
            parent[path[-1]] = data.draw(VALUES, label="value")
    return doc


@pytest.mark.fuzz
@given(data=st.data(), which=st.integers(0, len(SCENARIOS) - 1))
def test_a_mutated_scenario_parses_or_is_a_config_error(data: st.DataObject, which: int) -> None:
    try:
        assert isinstance(parse_scenario(_mutated(data, SCENARIOS[which]), "scenario t.json"), Scenario)
    except ConfigError as err:
        assert err.message.startswith("scenario t.json")


@pytest.mark.fuzz
@given(data=st.data(), which=st.integers(0, len(PACKS) - 1))
def test_a_mutated_pack_parses_or_is_a_config_error(data: st.DataObject, which: int) -> None:
    try:
        assert isinstance(parse_pack_document(_mutated(data, PACKS[which]), "p.toml", "p.toml"), Pack)
    except ConfigError as err:
        assert err.message.startswith("p.toml")


FILE_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from(("[" * 50_000, "{" + '"a":[' * 50_000, "a = " + "[" * 50_000, "x = {" * 50_000, "\ufeff{}")),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


@pytest.mark.fuzz
@given(text=FILE_TEXT, suffix=st.sampled_from((".json", ".toml")))
def test_any_scenario_file_loads_or_is_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str, suffix: str
) -> None:
    path = tmp_path_factory.mktemp("scenario") / f"s{suffix}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_scenario(str(path))
    except ConfigError as err:
        assert str(path) in err.message


@pytest.mark.fuzz
@given(text=FILE_TEXT)
def test_any_pack_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        parse_pack(text, "p.toml", "p.toml")
    except ConfigError as err:
        assert err.message.startswith("p.toml")
