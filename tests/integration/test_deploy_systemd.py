"""The systemd deployment in deploy/systemd/ works as shipped: the units pass `systemd-analyze verify`, each is
hardened to an exposure of at most 3.0 (`systemd-analyze security --offline=yes`), the sysusers.d/tmpfiles.d
entries create the user and the 0700 state directories the units run with, and the enrolment token given through
`LoadCredential=` reaches the agent's `[enrollment] token_file`.

Where systemd's tools cannot run the tests skip with the reason; under CI=true they fail instead (the tools are
installed by scripts/ensure-tools.sh).
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from gpucensus.agent import config as agent_config

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = ("gpucensus-agent.service", "gpucensus-collector.service")
MAX_EXPOSURE = 3.0
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (scripts/ensure-tools.sh installs Debian's systemd package)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true: the systemd deployment must be checked in CI")
        pytest.skip(message)
    return path


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value given (units repeat keys such as DeviceAllow=)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def _exec_paths(unit: Path) -> list[str]:
    settings = unit_settings(unit)
    commands = [c for key in ("Service.ExecStart", "Service.ExecStartPre") for c in settings.get(key, [])]
    return [command.lstrip("-@:+!").split()[0] for command in commands]


def _root_with_units(tmp_path: Path) -> Path:
    """A root tree holding the host's stock units, ours in /etc/systemd/system and a stub at each ExecStart path,
    so `verify --root` checks our files without anything installed on this machine."""
    host_units = next((d for d in HOST_UNIT_DIRS if (d / "multi-user.target").exists()), None)
    if host_units is None:
        pytest.skip("no stock systemd units on this machine (multi-user.target) to verify against")
    root = tmp_path / "root"
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in UNITS:
        shutil.copy(SYSTEMD_DIR / name, root / "etc/systemd/system" / name)
        for executable in _exec_paths(SYSTEMD_DIR / name):
            stub = root / executable.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
            stub.chmod(0o755)
    return root


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    root = _root_with_units(tmp_path)
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", *UNITS], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"verify warned: {result.stderr}"


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify harness itself fails on a unit systemd would not run (an unknown key and a missing binary)."""
    analyze = _tool("systemd-analyze")
    root = _root_with_units(tmp_path)
    bad = root / "etc/systemd/system/gpucensus-agent.service"
    bad.write_text(bad.read_text() + "\n[Service]\nExecStartPost=/opt/missing/bin/x\nHardenEverything=yes\n")
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", "gpucensus-agent.service"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "HardenEverything" in result.stderr


def exposure(unit: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    analyze = _tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=30", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, f"no exposure level in the output:\n{result.stdout}\n{result.stderr}"
    return float(found.group(1)), result


@pytest.mark.parametrize("name", UNITS)
def test_unit_exposure_is_at_most_3(name: str) -> None:
    score, result = exposure(SYSTEMD_DIR / name)
    assert result.returncode == 0, result.stderr  # --threshold=30: exit 1 above 3.0
    assert score <= MAX_EXPOSURE, f"{name}: exposure {score} > {MAX_EXPOSURE}\n{result.stdout}"


def test_agent_keeps_what_nvml_and_the_pci_check_need() -> None:
    """Hardening must not take away the GPU device nodes or the read-only /sys of the PCI cross-check, nor the
    /proc files the host facts come from."""
    settings = unit_settings(SYSTEMD_DIR / "gpucensus-agent.service")
    assert settings["Service.DevicePolicy"] == ["closed"]
    allowed = {value.split()[0] for value in settings["Service.DeviceAllow"]}
    assert {"char-nvidia-frontend", "char-nvidia-caps"} <= allowed
    assert settings.get("Service.PrivateDevices", ["no"]) == ["no"]  # a private /dev has no /dev/nvidia*
    assert "Service.ProcSubset" not in settings  # /proc/stat, /proc/meminfo: boot time, memory
    assert "/sys" not in " ".join(settings.get("Service.InaccessiblePaths", []))


def test_sysusers_and_tmpfiles_create_the_user_and_private_state_dirs(tmp_path: Path) -> None:
    sysusers, tmpfiles = _tool("systemd-sysusers"), _tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    run = dict(capture_output=True, text=True, timeout=60, check=False)
    created = subprocess.run([sysusers, f"--root={root}", str(SYSTEMD_DIR / "sysusers.d/gpucensus.conf")], **run)
    assert created.returncode == 0, created.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert "gpucensus" in passwd
    uid, gid = int(passwd["gpucensus"][2]), int(passwd["gpucensus"][3])
    assert passwd["gpucensus"][6].endswith("nologin")
    made = subprocess.run(
        [tmpfiles, f"--root={root}", "--create", str(SYSTEMD_DIR / "tmpfiles.d/gpucensus.conf")], **run
    )
    assert made.returncode == 0, made.stderr
    for state in ("var/lib/gpucensus", "var/lib/gpucensus-collector"):
        info = (root / state).stat()
        assert stat.S_IMODE(info.st_mode) == 0o700, state
        assert (info.st_uid, info.st_gid) == (uid, gid), state
    config_dir = (root / "etc/gpucensus").stat()
    assert stat.S_IMODE(config_dir.st_mode) & 0o007 == 0  # configs may name keys and tokens: not world-readable
    assert config_dir.st_gid == gid


def test_units_run_as_the_sysusers_user_in_the_tmpfiles_dirs() -> None:
    sysusers = (SYSTEMD_DIR / "sysusers.d/gpucensus.conf").read_text()
    tmpfiles = (SYSTEMD_DIR / "tmpfiles.d/gpucensus.conf").read_text()
    for name in UNITS:
        settings = unit_settings(SYSTEMD_DIR / name)
        assert re.search(rf"^u\s+{settings['Service.User'][0]}\s", sysusers, re.M), name
        assert (
            re.search(rf"^g\s+{settings['Service.Group'][0]}\s", sysusers, re.M)
            or settings["Service.Group"] == settings["Service.User"]
        )
        for state in settings["Service.StateDirectory"]:
            assert re.search(rf"^d\s+/var/lib/{state}\s+0700\s", tmpfiles, re.M), (name, state)
        assert settings["Service.StateDirectoryMode"] == ["0700"]
        assert settings["Service.UMask"] == ["0077"]


def _credential_dir_for(tmp_path: Path) -> tuple[Path, str]:
    """The agent unit's token credential id and a directory standing in for systemd's $CREDENTIALS_DIRECTORY."""
    settings = unit_settings(SYSTEMD_DIR / "gpucensus-agent.service")
    (load,) = settings["Service.LoadCredential"]
    credential_id = load.split(":")[0]
    # a missing credential must not stop the unit once the node is enrolled: SetCredential= is the fallback
    assert [value.split(":")[0] for value in settings["Service.SetCredential"]] == [credential_id]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    return credentials, credential_id


def _agent_env(credentials: Path) -> dict[str, str]:
    settings = unit_settings(SYSTEMD_DIR / "gpucensus-agent.service")
    env = {}
    for assignment in settings.get("Service.Environment", []):
        name, _, value = assignment.strip('"').partition("=")
        env[name] = value.replace("%d", str(credentials))  # %d: the credentials directory
    return env


def test_enrollment_token_from_load_credential_reaches_the_agent(tmp_path: Path) -> None:
    credentials, credential_id = _credential_dir_for(tmp_path)
    (credentials / credential_id).write_text("site-token-123\n", encoding="utf-8")
    loaded = agent_config.load(None, env=_agent_env(credentials))
    assert loaded.read_token() == "site-token-123"


def test_empty_fallback_credential_means_no_token(tmp_path: Path) -> None:
    """After enrolment the operator deletes the token file; SetCredential= then hands the agent its fallback value
    (C escapes decoded, as systemd does), which must read as no token at all."""
    credentials, credential_id = _credential_dir_for(tmp_path)
    (fallback,) = unit_settings(SYSTEMD_DIR / "gpucensus-agent.service")["Service.SetCredential"]
    value = codecs.decode(fallback.partition(":")[2], "unicode_escape")
    (credentials / credential_id).write_text(value, encoding="utf-8")
    assert agent_config.load(None, env=_agent_env(credentials)).read_token() == ""


def test_operators_guide_installs_the_files_as_they_ship() -> None:
    """docs/operators.md "Install with systemd" names every shipped file, the paths the units expect and the
    credential file the agent unit loads."""
    guide = (SYSTEMD_DIR.parents[1] / "docs" / "operators.md").read_text(encoding="utf-8")
    section = guide.split("### Install with systemd", 1)[1].split("\n## ", 1)[0]
    for shipped in sorted(p for p in SYSTEMD_DIR.rglob("*") if p.is_file()):
        assert f"deploy/systemd/{shipped.relative_to(SYSTEMD_DIR)}" in section, shipped
    for name in UNITS:
        settings = unit_settings(SYSTEMD_DIR / name)
        executable = _exec_paths(SYSTEMD_DIR / name)[0]
        assert f"python3.11 -m venv {executable.rsplit('/bin/', 1)[0]}\n" in section, executable
        assert f"systemctl enable --now {name.removesuffix('.service')}" in section
        config = settings["Service.ExecStart"][0].split("--config ")[1].split()[0]
        assert config in section, config
    (credential,) = unit_settings(SYSTEMD_DIR / "gpucensus-agent.service")["Service.LoadCredential"]
    assert f"/etc/credstore/{credential}" in section  # LoadCredential=ID searches /etc/credstore/ID
    for conf in ("sysusers.d", "tmpfiles.d"):
        assert f"/etc/{conf}/gpucensus.conf" in section
