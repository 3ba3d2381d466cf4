"""What a command loads before it does its work: building the parser must not import every command's dependencies.
A collector command on a SQLite store must not load what only the server or PostgreSQL needs (gRPC, the protos,
the metrics library, the PostgreSQL driver, cryptography); an agent command other than `run` and `check` loads
no gRPC. A regression test on the modules a real process imported, not on its timing (the timings are in
tests/bench/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gpucensus.collector.ingest.pipeline import Pipeline
from gpucensus.collector.store import open_store

from tests.ingest_nodes import NOW, TestNode, enroll

# top-level packages that only `serve`, a PostgreSQL store or a command handling keys needs
HEAVY = ("grpc", "grpc_health", "grpc_reflection", "google", "psycopg", "psycopg_binary", "prometheus_client",
         "cryptography")  # fmt: skip

# runs one command in a fresh interpreter and prints the exit code and the top-level packages it imported
WRAPPER = """
import importlib, json, sys
code = importlib.import_module(sys.argv[1]).main(sys.argv[2:])
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""
GRPC = {"grpc", "grpc_health", "google"}


def loaded(*argv: str, cli: str = "gpucensus.collector.cli") -> tuple[int, set[str]]:
    """(exit code, top-level packages imported) of `gpucensus-collector ARGV...` (or `cli`) in a new process."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, cli, *argv], capture_output=True, text=True, timeout=120)
    last = json.loads(out.stderr.strip().splitlines()[-1])
    return last["code"], set(last["modules"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store with one node and its attestation (so `report` reads an inventory, not an empty store)."""
    directory = tmp_path_factory.mktemp("startup-store")
    store = open_store("sqlite", data_dir=str(directory))
    try:
        node = TestNode("startup-node")
        enroll(store, node)
        assert Pipeline(store, clock=lambda: NOW).ingest(node.next()).log_index is not None
    finally:
        store.close()
    return directory


@pytest.mark.parametrize(
    "argv",
    [
        ("report", "--format", "json"),
        ("evaluate", "--live"),
        ("node", "list"),
        ("site", "list"),
        ("prune",),
    ],
)
def test_a_command_on_a_sqlite_store_loads_no_server_or_postgres_module(data_dir: Path, argv: tuple[str, ...]) -> None:
    code, modules = loaded(*argv, "--data-dir", str(data_dir))
    assert code == 0
    assert "sqlite3" in modules and "gpucensus" in modules  # the wrapper saw the command's own imports
    assert not modules & set(HEAVY), f"{argv[0]} imported {sorted(modules & set(HEAVY))}"


def test_parsing_alone_loads_none_of_them() -> None:
    code, modules = loaded("policy", "list")
    assert code == 0
    assert not modules & set(HEAVY)


def test_a_command_that_needs_cryptography_still_loads_it(data_dir: Path, tmp_path: Path) -> None:
    # the check sees what a handler imports when it runs: `log key` signs with the log's Ed25519 key
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\nkind = "sqlite"\ndata_dir = "{data_dir}"\n')
    code, modules = loaded("log", "key", "--config", str(config))
    assert code == 0
    assert "cryptography" in modules


@pytest.mark.parametrize(
    "argv",
    [
        ("snapshot", "--backend", "mock", "--profile", "dgx-h100", "--node-id", "n1", "--format", "json"),
        ("classify", "--tpp", "15832", "--die-area", "814"),
    ],
)
def test_an_agent_command_without_the_uplink_loads_no_grpc(argv: tuple[str, ...]) -> None:
    code, modules = loaded(*argv, cli="gpucensus.agent.cli")
    assert code == 0
    assert "gpucensus" in modules and not modules & GRPC, sorted(modules & GRPC)


def test_agent_check_still_loads_grpc(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[collector]\naddress = "127.0.0.1:9"\n[node]\nstate_dir = "{tmp_path}"\n')
    code, modules = loaded("check", "--config", str(config), cli="gpucensus.agent.cli")
    assert code == 1  # nothing is set up: checks fail, after connecting over gRPC
    assert GRPC <= modules
