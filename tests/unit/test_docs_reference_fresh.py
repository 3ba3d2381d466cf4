"""docs/reference/ is exactly what scripts/cli_reference.py makes of the console scripts' parsers today."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts_module import load_script

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    return load_script("cli_reference")


def test_every_console_script_has_a_fresh_reference_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    names = _generator().generate(tmp_path)
    assert {"gpucensus-agent.md", "gpucensus-collector.md", "gpucensus-audit.md"} <= set(names)
    checked_in = ROOT / "docs" / "reference"
    for name in names:
        fresh = (tmp_path / name).read_text()
        assert (checked_in / name).exists(), f"docs/reference/{name} is missing: run `python scripts/cli_reference.py`"
        assert (checked_in / name).read_text() == fresh, (
            f"docs/reference/{name} is stale: run `python scripts/cli_reference.py` and commit the result"
        )
    extra = {p.name for p in checked_in.iterdir()} - set(names)
    assert not extra, f"docs/reference/ has pages for no console script: {sorted(extra)}"


def test_a_subcommand_option_appears_in_its_page(tmp_path: Path) -> None:
    _generator().generate(tmp_path)
    page = (tmp_path / "gpucensus-collector.md").read_text()
    assert "## `gpucensus-collector token create`" in page and "--ttl TTL" in page
    assert "## `gpucensus-agent spool retry`" in (tmp_path / "gpucensus-agent.md").read_text()
