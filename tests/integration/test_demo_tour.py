"""The README's tour of `make demo` quotes what scripts/demo.sh really prints (`…` stands for what varies)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOUR_HEADING = "## A five-minute tour of `make demo`"


def tour_excerpts(readme: str) -> list[list[str]]:
    """The ```text blocks of the tour section, as lists of lines."""
    start = readme.index(TOUR_HEADING)
    end = readme.find("\n## ", start + len(TOUR_HEADING))
    section = readme[start : end if end != -1 else None]
    return [block.splitlines() for block in re.findall(r"^```text\n(.*?)^```$", section, re.M | re.S)]


def line_pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in line.split("…")) + r"\s*")


def missing_lines(excerpts: list[list[str]], output: list[str]) -> list[str]:
    """Excerpt lines not found in the output in the order shown (each block's lines in order, blocks in order)."""
    missing, position = [], 0
    for block in excerpts:
        for line in block:
            pattern = line_pattern(line)
            found = next((i for i in range(position, len(output)) if pattern.fullmatch(output[i])), None)
            if found is None:
                missing.append(line)
            else:
                position = found + 1
    return missing


def test_matching_is_strict() -> None:
    output = ["a 1 b", "c", "d"]
    assert missing_lines([["a … b"], ["d"]], output) == []
    assert missing_lines([["d"], ["c"]], output) == ["c"]  # out of order
    assert missing_lines([["a 2 c"]], output) == ["a 2 c"]


def test_the_tour_quotes_the_demo_output() -> None:
    excerpts = tour_excerpts((ROOT / "README.md").read_text())
    assert len(excerpts) >= 4 and sum(map(len, excerpts)) >= 15
    env = dict(os.environ, GPUCENSUS_BIN=str(Path(sys.executable).parent))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    missing = missing_lines(excerpts, result.stdout.splitlines())
    assert not missing, f"README tour lines not in the demo's output: {missing}\n--- output:\n{result.stdout}"
