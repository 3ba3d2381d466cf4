"""The operators' "from zero to a node reporting" walkthrough (docs/operators.md), run as written.

The block between the walkthrough markers is run by bash with `set -euo pipefail`, after moving its absolute
paths under a temporary directory and its ports to free ones: a wheel built from this checkout installed into a
fresh virtual environment with both roles' extras, the server certificate from `bootstrap.sh`, a collector with
mutual TLS that issues the client certificates, an agent with only the server CA and a token, `agent check` and
the compliance report. So the documented steps work from zero, and the wheel (not the checkout) is what runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_delivery import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operators.md"
BLOCK = re.compile(r"<!-- walkthrough: begin -->\n```sh\n(.*?)```\n<!-- walkthrough: end -->", re.S)


def walkthrough() -> str:
    found = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(found) == 1, "docs/operators.md must hold exactly one walkthrough block"
    return found[0]


def relocated(script: str, tmp: Path, wheels: Path) -> str:
    """The block with its system paths under `tmp` and free ports; the longest paths are replaced first."""
    places = {
        "/var/lib/gpucensus-collector": tmp / "var" / "collector",
        "/var/lib/gpucensus": tmp / "var" / "node",
        "/etc/gpucensus": tmp / "etc",
        "/opt/gpucensus": tmp / "opt",
        "dist/": f"{wheels}/",
        "python3.11": sys.executable,
        "127.0.0.1:7443": f"127.0.0.1:{free_port()}",
        "127.0.0.1:7444": f"127.0.0.1:{free_port()}",
    }
    for old, new in places.items():
        assert old in script, f"the walkthrough no longer mentions {old}: update this test"
        script = script.replace(old, str(new))
    return script


def test_the_walkthrough_runs_as_written_from_a_wheel(tmp_path: Path) -> None:
    wheels, source = tmp_path / "dist", tmp_path / "src"
    # from a copy of the tracked files: setuptools reuses a checkout's build/ directory, whose stale modules
    # (a renamed migration, say) would end up in the wheel
    tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, cwd=ROOT, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    script = relocated(walkthrough(), tmp_path, wheels)
    # the test's own guard: whatever happens, no collector outlives the test
    guarded = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "GPUCENSUS"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    done = subprocess.run(["bash", "-c", guarded], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}"
    assert "Traceback" not in done.stderr

    # the installed wheel ran, not the checkout, and it installs nothing outside its namespace: no top-level
    # agent, collector, common or protos to collide with the unrelated published packages of those names
    probe = (
        "import importlib.util, gpucensus.agent; print(gpucensus.agent.__file__); "
        "print([n for n in ('agent', 'collector', 'common', 'protos') if importlib.util.find_spec(n)])"
    )
    where = subprocess.run([str(tmp_path / "opt" / "bin" / "python"), "-c", probe],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)  # fmt: skip
    lines = where.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "opt")), where.stdout + where.stderr
    assert lines[1] == "[]", lines[1]
    # the node got its certificate from the collector and reported over mutual TLS; `check` passed every line
    assert (tmp_path / "var" / "node" / "node.key.client.pem").is_file()
    assert "enrolled node gpu-01 at site fra1" in done.stderr
    assert re.search(r"(?m)^ok\s+enrollment: key \w+ enrolled as node gpu-01 at site fra1", done.stdout)
    assert re.search(r"(?m)^ok\s+tls files: mutual TLS with the collector-issued certificate", done.stdout)
    assert "gpucensus-agent check: ready to report" in done.stderr
    # the report counts the node's 8 H100s in Germany
    assert re.search(r"DE\b.*\b8\b", done.stdout), done.stdout[-3000:]
