"""An installation without the role's extra fails with one line and the install hint, never a traceback: the agent
without `gpucensus[agent]` has no NVML binding (`pynvml`), which the default backend needs; the collector without
`gpucensus[collector]` has no PostgreSQL driver (`psycopg`) and no gRPC reflection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_PYNVML = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pynvml":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
from gpucensus.agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _python(*argv: str) -> subprocess.CompletedProcess[str]:
    """This interpreter with the checkout first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_the_agent_without_its_extra_says_which_extra_to_install() -> None:
    result = _python("-c", WITHOUT_PYNVML, "snapshot", "--backend", "nvml")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "pynvml" in result.stderr
    assert "pip install 'gpucensus[agent]'" in result.stderr


WITHOUT = """
import importlib.abc, sys
missing = sys.argv[1]
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == missing:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
from gpucensus.collector.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    ("missing", "command"), [("psycopg", "serve"), ("grpc_reflection", "serve"), ("psycopg", "report")]
)
def test_the_collector_without_its_extra_says_which_extra_to_install(
    missing: str, command: str, tmp_path: Path
) -> None:
    # serve needs both; any command on a PostgreSQL store needs the driver, imported when the store opens (the
    # module is missing before any connection is made: this test never reaches the database)
    config = tmp_path / "collector.toml"
    config.write_text('[store]\nkind = "postgres"\ndsn = "host=127.0.0.1 port=1 dbname=none"\n')
    result = _python("-c", WITHOUT, missing, command, "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert missing in result.stderr
    assert "pip install 'gpucensus[collector]'" in result.stderr


def test_a_sqlite_collector_command_works_without_the_extra(tmp_path: Path) -> None:
    # the driver and reflection are imported by what needs them, not by every command
    result = _python("-c", WITHOUT, "psycopg", "report", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    result = _python("-c", WITHOUT, "grpc_reflection", "site", "list", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
