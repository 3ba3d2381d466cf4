"""The repository explains itself: no file points at material users do not have (a `shared/` folder beside the
checkout, design notes kept elsewhere, absolute paths of a build machine), and every relative link in the
Markdown documentation resolves to a file in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

OUTSIDE = {
    "a shared/ folder outside the repository": re.compile(r"(?<![\w.-])(\.\./)?shared/"),
    "design notes kept outside the repository": re.compile(r"\bDESIGN(\.md\b| §)|\bSTYLE(\.md\b| \d)"),
    "an absolute path of a build machine": re.compile(r"/work/[\w.-]+/"),
}
THIS_FILE = Path(__file__).resolve()  # its examples of what is refused are the only ones allowed
MARKDOWN_LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s]+)\)")


def repository_files() -> list[Path]:
    """Tracked files plus new files not ignored (what a commit would contain)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")  # fmt: skip
    return [ROOT / name for name in listed if name and (ROOT / name).is_file()]


def text_files() -> list[Path]:
    out = []
    for path in repository_files():
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            out.append(path)
    return out


def outside_references(path: Path) -> list[str]:
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        for what, pattern in OUTSIDE.items():
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()[:100]}")
    return found


def test_no_file_refers_to_material_outside_the_repository() -> None:
    files = text_files()
    assert len(files) > 100 and ROOT / "README.md" in files
    found = [hit for path in files if path.resolve() != THIS_FILE for hit in outside_references(path)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "line",
    # built from pieces so that this file itself never reads as such a reference
    ["see ../" + "shared/" + "DESIGN.md", "seeded from shared" + "/reference/accelerators.json",
     "(DESIGN §4.4)", "STYLE 6", "notes in /work/notes/x.md"],
)  # fmt: skip
def test_each_kind_of_outside_reference_is_caught(tmp_path: Path, line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    bad = tmp_path / "doc.md"
    bad.write_text(f"fine line\n{line}\n")
    hits = outside_references(bad)
    assert hits and all(hit.startswith("doc.md:2: ") for hit in hits)


@pytest.mark.parametrize(
    "line", ["gcc -shared -fPIC", "the shared language", "shared_buffers", "docs/regulation.md §1", "DESIGNS"]
)
def test_ordinary_words_are_not_references(tmp_path: Path, line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    ok = tmp_path / "doc.md"
    ok.write_text(line + "\n")
    assert outside_references(ok) == []


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.*)", line)):
            text = match.group(1).replace("`", "").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in MARKDOWN_LINK.findall(path.read_text()):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{path.relative_to(ROOT)}: ({target}): no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved.read_text()):
            broken.append(f"{path.relative_to(ROOT)}: ({target}): no such heading")
    return broken


def test_every_relative_markdown_link_resolves_inside_the_repository() -> None:
    broken = [hit for path in repository_files() if path.suffix == ".md" for hit in broken_links(path)]
    assert not broken, "\n".join(broken)


def test_a_link_to_a_missing_heading_or_outside_file_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Exit codes\n## `gpucensus-audit verify`\n## §1. ECCN 3A090: the accounting\n")
    doc = tmp_path / "b.md"
    doc.write_text("[ok](a.md#exit-codes) [ok](a.md#gpucensus-audit-verify) [ok](a.md#1-eccn-3a090-the-accounting)\n")
    assert broken_links(doc) == []
    doc.write_text("[x](a.md#exit-code) [y](../outside.md) [z](#nowhere)\n")
    assert len(broken_links(doc)) == 3


def test_the_project_files_a_newcomer_needs_exist() -> None:
    for name in ("README.md", "LICENSE", "NOTICE", "CHANGELOG.md", "SECURITY.md", "CONTRIBUTING.md"):
        assert (ROOT / name).is_file(), name
    for name in ("operators", "compliance", "auditors", "architecture", "formats", "regulation"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
    assert (
        "Apache License" in (ROOT / "LICENSE").read_text()
        and "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    )
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
