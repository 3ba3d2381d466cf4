"""Fixtures that run the real NVML backend (real pynvml) against the fake `libnvidia-ml.so.1`.

- `fakenvml_build`: session fixture, a function `(omit=()) -> Path` building (and caching) the fake library
  with the named entry points absent; returns the directory to put on LD_LIBRARY_PATH.
- `nvml_discovery`: a function `(profile, extra="", omit=()) -> Discovery` running `NvmlBackend().discover()` in
  a subprocess against the fake (a profile name from tests/fakenvml/profiles, a path, plus extra profile lines),
  raising `DriverError` (rebuilt from the child's report) when the backend did.
- `fake_nvml_backend`: a function `(profile, extra="", omit=()) -> backend` whose `name` is "nvml" and whose
  `discover()` does the above, for tests written against the `Backend` Protocol.
- `nvml_run`: the lower-level function `(profile, extra="", omit=(), library_path=None) -> RunResult`.

Load them in a test module with `pytest_plugins = ["tests.integration.fakenvml_fixtures"]`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpucensus.common.devices import Discovery, DriverInfo, GpuDevice, MigInstance
from gpucensus.common.errors import DriverError

FAKENVML_DIR = Path(__file__).resolve().parents[1] / "fakenvml"
PROFILES_DIR = FAKENVML_DIR / "profiles"
DISCOVER_SCRIPT = FAKENVML_DIR / "discover_json.py"
REPO_ROOT = FAKENVML_DIR.parents[1]


def _load_build_module() -> Any:
    spec = importlib.util.spec_from_file_location("fakenvml_build", FAKENVML_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


def profile_text(profile: str | Path, extra: str = "") -> str:
    """A profile's text: `profile` names a file in tests/fakenvml/profiles (without .profile) or is a path."""
    path = Path(profile)
    if not path.exists():
        path = PROFILES_DIR / f"{profile}.profile"
    return path.read_text() + "\n" + extra


def fake_env(lib_dir: Path, profile_path: Path | None) -> dict[str, str]:
    """The environment for a child process that must load the fake library (and no other)."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(lib_dir)
    if profile_path is not None:
        env["FAKENVML_PROFILE"] = str(profile_path)
    else:
        env.pop("FAKENVML_PROFILE", None)
    return env


@dataclass(frozen=True)
class RunResult:
    returncode: int
    report: dict[str, Any]  # {"discovery": ...} or {"error": ...}
    stderr: str


def discovery_from_json(data: dict[str, Any]) -> Discovery:
    """Rebuild the dataclasses from `dataclasses.asdict(discovery)`."""
    devices = []
    for raw in data["devices"]:
        fields = dict(raw)
        fields["mig_instances"] = [MigInstance(**mig) for mig in fields["mig_instances"]]
        devices.append(GpuDevice(**fields))
    return Discovery(driver=DriverInfo(**data["driver"]), devices=devices)


@pytest.fixture(scope="session")
def fakenvml_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    if build.compiler() is None:
        message = "no C compiler to build the fake libnvidia-ml (make test installs gcc)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # the real-pynvml tests must run in CI
        pytest.skip(message)
    cache = tmp_path_factory.mktemp("fakenvml-lib")

    def build_for(omit: Iterable[str] = ()) -> Path:
        return build.build_library(cache, omit)

    return build_for


@pytest.fixture
def nvml_run(fakenvml_build: Callable[..., Path], tmp_path: Path) -> Callable[..., RunResult]:
    counter = iter(range(1_000_000))

    def run(
        profile: str | Path, extra: str = "", omit: Iterable[str] = (), library_path: str | None = None
    ) -> RunResult:
        lib_dir = fakenvml_build(omit)
        profile_path = tmp_path / f"run-{next(counter)}.profile"
        profile_path.write_text(profile_text(profile, extra))
        args = [sys.executable, str(DISCOVER_SCRIPT)] + ([library_path] if library_path else [])
        env = fake_env(lib_dir, profile_path)
        done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"discovery printed no JSON (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
        if "fakenvml:" in done.stderr:  # a bad profile line, or NVML left initialised
            pytest.fail(f"the fake libnvidia-ml reported a problem:\n{done.stderr}")
        return RunResult(done.returncode, report, done.stderr)

    return run


@pytest.fixture
def nvml_discovery(nvml_run: Callable[..., RunResult]) -> Callable[..., Discovery]:
    def discover(profile: str | Path, extra: str = "", omit: Iterable[str] = ()) -> Discovery:
        result = nvml_run(profile, extra, omit)
        if "error" in result.report:
            error = result.report["error"]
            raise DriverError(error["message"], error["hint"])
        assert result.returncode == 0, result.stderr
        return discovery_from_json(result.report["discovery"])

    return discover


@dataclass(frozen=True)
class SubprocessNvmlBackend:
    """The `Backend` Protocol over `nvml_discovery`: the real NvmlBackend, run in a child process."""

    discover_with: Callable[[], Discovery]
    name: str = "nvml"

    def discover(self) -> Discovery:
        return self.discover_with()


@pytest.fixture
def fake_nvml_backend(nvml_discovery: Callable[..., Discovery]) -> Callable[..., SubprocessNvmlBackend]:
    def backend(profile: str | Path, extra: str = "", omit: Iterable[str] = ()) -> SubprocessNvmlBackend:
        return SubprocessNvmlBackend(lambda: nvml_discovery(profile, extra, omit))

    return backend
