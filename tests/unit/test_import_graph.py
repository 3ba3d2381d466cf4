"""The package layering: `common` is the shared language (signed format, accounting, shared errors) and imports
neither side; the agent and the collector import `common` and `protos`, never each other. And every import of ours
goes through the `gpucensus` namespace the wheel installs them under (a bare `import agent` would pick up whatever
unrelated package of that name is installed)."""

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


def _imported_modules(source: str) -> set[str]:
    """Every absolute module `source` imports (anywhere in the module, function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def imported_packages(source: str) -> set[str]:
    """Packages of ours (`gpucensus.<package>`) that `source` imports."""
    found = set()
    for module in _imported_modules(source):
        parts = module.split(".")
        if parts[0] == "gpucensus" and len(parts) > 1 and parts[1] in OURS:
            found.add(parts[1])
    return found


def bare_imports(source: str) -> set[str]:
    """Imports of our packages without the namespace (`import agent`, `from collector.x import y`)."""
    return {m for m in _imported_modules(source) if m.split(".")[0] in OURS}


def edges() -> list[tuple[str, str, str]]:
    """(file, from package, to package) for every import between our packages."""
    result = []
    for package in sorted(OURS):
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path.read_text(encoding="utf-8")):
                result.append((str(path.relative_to(ROOT)), package, target))
    return result


def test_the_checker_sees_top_level_and_nested_imports() -> None:
    source = (
        "import gpucensus.agent.keys\nfrom gpucensus.collector import verify\ndef f():\n"
        "    from gpucensus.common.jcs import loads\nimport os\nfrom gpucensus import protos\n"
    )
    assert imported_packages(source) == {"agent", "collector", "common", "protos"}
    assert bare_imports(source) == set()
    assert bare_imports("import agent\nfrom collector.store import x\n") == {
        "agent",
        "collector.store",
        "collector.store.x",
    }


def test_every_import_goes_in_an_allowed_direction() -> None:
    found = edges()
    assert any(src == "collector" and dst == "common" for _, src, dst in found)  # the walk really found imports
    wrong = [f"{path}: {src} -> {dst}" for path, src, dst in found if dst not in ALLOWED[src]]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_every_import_of_ours_goes_through_the_namespace() -> None:
    files = [p for p in ROOT.rglob("*.py") if not {".venv", "build", ".git"} & set(p.relative_to(ROOT).parts)]
    assert len(files) > 100  # the walk really read the tree
    bare = [f"{p.relative_to(ROOT)}: {sorted(bare_imports(p.read_text(encoding='utf-8')))}" for p in files
            if bare_imports(p.read_text(encoding="utf-8"))]  # fmt: skip
    assert not bare, "imports without the gpucensus namespace:\n" + "\n".join(bare)
