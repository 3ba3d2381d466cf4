"""Every example output in the docs is what the commands print today (scripts/doc_examples.py runs them)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.scripts_module import load_script

ROOT = Path(__file__).resolve().parents[2]


def _examples_module():
    return load_script("doc_examples")


def test_the_generated_examples_are_where_the_docs_promise_them() -> None:
    docs = _examples_module()
    by_file = {path.name: docs.examples(path) for path in docs.documents()}
    worked = [e for e in by_file["compliance.md"] if "worked-example.json" in e.body]
    assert len(worked) == 5, "the worked example's five runs must be generated examples"
    assert any("classify" in e.body for e in by_file["compliance.md"])
    assert any("snapshot" in e.body for e in by_file["operators.md"])


def test_every_example_output_is_fresh() -> None:
    docs = _examples_module()
    stale = docs.stale(Path(sys.executable).parent)
    assert not stale, "\n".join(
        f"{example.where()} is stale (run `python scripts/doc_examples.py`); fresh output:\n{fresh}"
        for example, fresh in stale
    )


def test_a_changed_output_is_caught(tmp_path: Path) -> None:
    docs = _examples_module()
    fake = tmp_path / "doc.md"
    fake.write_text(f"{docs.MARKER}\n```console\n$ echo one\ntwo\n$ echo $?\n0\n```\n")
    (example,) = docs.examples(fake)
    assert example.commands == ["echo one", "echo $?"]
    assert docs.run(example.commands, Path(sys.executable).parent) == "$ echo one\none\n$ echo $?\n0\n"
