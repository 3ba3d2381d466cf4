"""The real agent and collector still work inside the confinement the systemd units impose, as far as it can be
reproduced without systemd as PID 1: no capabilities and no new privileges (`CapabilityBoundingSet=`,
`NoNewPrivileges=yes`), no writable+executable memory (`MemoryDenyWriteExecute=yes`, the kernel's PR_SET_MDWE,
Linux >= 6.3), `UMask=0077`, and the enrolment token from a `$CREDENTIALS_DIRECTORY` reached through the unit's
`Environment=`. A collector process and an agent process on loopback: the agent enrols and delivers, and every
file it creates is private.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_deploy_systemd import SYSTEMD_DIR, unit_settings

BIN = Path(sys.executable).parent
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
WAIT_SECONDS = 30.0
# Applies MemoryDenyWriteExecute= and UMask= to itself, then becomes the command.
CONFINE = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:\n"
    "    raise OSError(ctypes.get_errno(), 'PR_SET_MDWE')\n"
    "os.umask(0o077)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _confined(argv: list[str]) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        _unavailable("setpriv (util-linux) not found")
    drop = [setpriv, "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
    return [*drop, sys.executable, "-c", CONFINE, *argv]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true: the units' confinement must be checked in CI")
    pytest.skip(reason)


def _require_mdwe() -> None:
    probe = [sys.executable, "-c", CONFINE, sys.executable, "-c", "pass"]
    if subprocess.run(probe, capture_output=True, check=False, timeout=30).returncode != 0:
        _unavailable("the kernel has no PR_SET_MDWE (Linux >= 6.3), so MemoryDenyWriteExecute= cannot be reproduced")


def test_the_confinement_is_real() -> None:
    """Inside the wrapper a writable+executable mapping is refused and no capability is left."""
    _require_mdwe()
    check = (
        "import mmap, sys\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    sys.exit('W+X mapping allowed')\n"
        "except PermissionError:\n"
        "    pass\n"
        "caps = [l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd'))]\n"
        "assert all(l.split()[1] == '0' * 16 for l in caps), caps\n"
    )
    result = subprocess.run(
        _confined([sys.executable, "-c", check]), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _confined(argv), capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **(env or {})}
    )


def _agent_unit_env(credentials: Path) -> dict[str, str]:
    env = {}
    for assignment in unit_settings(SYSTEMD_DIR / "gpucensus-agent.service").get("Service.Environment", []):
        name, _, value = assignment.strip('"').partition("=")
        env[name] = value.replace("%d", str(credentials))
    return env


def test_agent_enrols_and_delivers_under_the_units_confinement(tmp_path: Path) -> None:
    _require_mdwe()
    data, state, credentials = tmp_path / "collector", tmp_path / "agent", tmp_path / "credentials"
    for directory in (data, state, credentials):
        directory.mkdir(mode=0o700)
    port = _free_port()
    collector_toml = tmp_path / "collector.toml"
    collector_toml.write_text(
        f'[store]\nkind = "sqlite"\ndata_dir = "{data}"\n[server]\nlisten = "127.0.0.1:{port}"\n', encoding="utf-8"
    )
    collector = [str(BIN / "gpucensus-collector")]
    conf = ["--config", str(collector_toml)]
    for step in (
        [*collector, "entity", "add", "acme", "--headquarters", "US", "--authorization", "uveu", *conf],
        [*collector, "site", "add", "fra1", "--country", "DE", "--entity", "acme", *conf],
    ):
        done = _run(step)
        assert done.returncode == 0, done.stderr
    created = _run([*collector, "token", "create", "--site", "fra1", "--ttl", "1h", *conf])
    assert created.returncode == 0, created.stderr
    (credential,) = unit_settings(SYSTEMD_DIR / "gpucensus-agent.service")["Service.LoadCredential"]
    (credentials / credential.split(":")[0]).write_text(created.stdout.splitlines()[0] + "\n", encoding="utf-8")

    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text(
        f'[collector]\naddress = "127.0.0.1:{port}"\nretry_initial_seconds = 0.05\nretry_max_seconds = 0.2\n'
        f'[node]\nid = "node-confined"\nsite = "fra1"\nstate_dir = "{state}"\n'
        '[inventory]\nbackend = "mock"\n',
        encoding="utf-8",
    )
    agent = str(BIN / "gpucensus-agent")
    keygen = _run([agent, "keygen", "--key", str(state / "node.key")])
    assert keygen.returncode == 0, keygen.stderr

    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        _confined([*collector, "serve", *conf]), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the confined collector did not listen"
            time.sleep(0.05)
        run = _run([agent, "run", "--config", str(agent_toml), "--rounds", "1"], env=_agent_unit_env(credentials))
        assert run.returncode == 0, run.stderr
        assert "enrolled node node-confined at site fra1" in run.stderr
    finally:
        serve.terminate()
        serve.wait(timeout=WAIT_SECONDS)
        log.close()
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()

    spool = sqlite3.connect(f"file:{state / 'spool.db'}?mode=ro", uri=True)
    try:
        states = [row[0] for row in spool.execute("SELECT state FROM envelopes")]
    finally:
        spool.close()
    assert states == ["delivered"]
    for directory in (state, data):
        for path in directory.rglob("*"):
            if path.suffix == ".pub":  # the node's public key is meant to be shared (keygen makes it 0644)
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {mode:04o} under UMask=0077"
