"""The package layering: `common` is the shared language (signed format, accounting, shared errors) and imports
neither side; the agent and the collector import `common` and `protos`, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"agent", "collector", "common", "protos"}
ALLOWED = {
    "agent": {"agent", "common", "protos"},
    "collector": {"collector", "common", "protos"},
    "common": {"common"},
    "protos": {"protos"},
}


def imported_packages(source: str) -> set[str]:
    """Top-level packages of ours that `source` imports (anywhere in the module, function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def edges() -> list[tuple[str, str, str]]:
    """(file, from package, to package) for every import between our packages."""
    result = []
    for package in sorted(OURS):
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path.read_text(encoding="utf-8")):
                result.append((str(path.relative_to(ROOT)), package, target))
    return result


def test_the_checker_sees_top_level_and_nested_imports() -> None:
    source = "import agent.keys\nfrom collector import verify\ndef f():\n    from common.jcs import loads\nimport os\n"
    assert imported_packages(source) == {"agent", "collector", "common"}


def test_every_import_goes_in_an_allowed_direction() -> None:
    found = edges()
    assert any(src == "collector" and dst == "common" for _, src, dst in found)  # the walk really found imports
    wrong = [f"{path}: {src} -> {dst}" for path, src, dst in found if dst not in ALLOWED[src]]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)
