"""pyproject's package data names only what ships: every pattern matches a file in its package (the issue found
patterns for HTML/JS/CSS files that did not exist), and the dashboard's stylesheet is among them."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = ("agent", "collector", "common", "protos")


def _package_dirs(name: str) -> list[Path]:
    if name == "*":
        return [d for top in PACKAGES for d in [ROOT / top, *(ROOT / top).rglob("*")] if (d / "__init__.py").is_file()]
    return [ROOT / name.removeprefix("gpucensus.").replace(".", "/")]


def test_every_package_data_pattern_matches_a_shipped_file() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package, patterns in data.items():
        for pattern in patterns:
            found = [f for d in _package_dirs(package) for f in d.glob(pattern) if f.is_file()]
            assert found, f"package data {package!r}: {pattern!r} matches no file"


def test_the_dashboard_stylesheet_is_package_data() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    css = [f for p in data.get("gpucensus.collector.dashboard", []) for f in (ROOT / "collector" / "dashboard").glob(p)]
    assert ROOT / "collector" / "dashboard" / "static" / "dashboard.css" in css


def test_every_source_package_is_installed_under_the_namespace() -> None:
    """The wheel installs exactly the source folders that are packages, each as gpucensus.<dotted path>."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"gpucensus": "."}
    folders = {d for top in PACKAGES for d in [ROOT / top, *(ROOT / top).rglob("*")] if (d / "__init__.py").is_file()}
    expected = {"gpucensus." + ".".join(d.relative_to(ROOT).parts) for d in folders}
    assert set(setuptools["packages"]) == expected
