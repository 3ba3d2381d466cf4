"""common.safe_text: the one helper every CLI's terminal output goes through."""

from __future__ import annotations

import io
import json
import logging
import sys
import unicodedata

import pytest
from gpucensus.common.safe_text import EscapingStream, csv_cell, escaped_stdio, printable, terminal_text
from hypothesis import given
from hypothesis import strategies as st

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\r\x00\x7f\x9b\u202e\u2066"


def dangerous(ch: str) -> bool:
    """A character a terminal acts on (C0, DEL, C1) or that reorders text (bidi controls)."""
    return unicodedata.category(ch) in ("Cc", "Cs") or unicodedata.bidirectional(ch) in (
        "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"
    ) or ch in "\u200e\u200f\u061c"  # fmt: skip


def test_printable_escapes_c0_c1_del_and_bidi_json_style() -> None:
    assert printable(HOSTILE) == ("\\u001b]0;pwned\\u0007\\u001b[2J\\u000d\\u0000\\u007f\\u009b\\u202e\\u2066")
    assert printable("line\nbreak\ttab") == "line\\u000abreak\\u0009tab"
    assert printable("GPU-5f3c ü 日本") == "GPU-5f3c ü 日本"  # printable text is left alone
    assert printable(42) == "42"


def test_terminal_text_keeps_lines_and_tabs() -> None:
    assert terminal_text("a\x1b[2Jb\n\tc\r") == "a\\u001b[2Jb\n\tc\\u000d"


def test_csv_cell_neutralises_formulas_and_leaves_numbers() -> None:
    assert [csv_cell(v) for v in ("=1+2", "+1", "-x", "@SUM(A1)", "ok", 3, None, 1.5)] == [
        "'=1+2", "'+1", "'-x", "'@SUM(A1)", "ok", 3, None, 1.5
    ]  # fmt: skip
    assert csv_cell("\x1b=x") == "\\u001b=x"


def test_the_escaping_stream_covers_print_logging_and_restores(capsys: pytest.CaptureFixture[str]) -> None:
    with escaped_stdio():
        print(f"out {HOSTILE}")
        handler = logging.StreamHandler()  # picks up sys.stderr as it is now
        logger = logging.getLogger("test.safe_text")
        logger.addHandler(handler)
        logger.propagate = False  # only this handler: a root handler left by an in-process CLI run is not ours
        try:
            logger.warning("node %s", HOSTILE)
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
    assert not isinstance(sys.stdout, EscapingStream) and not isinstance(sys.stderr, EscapingStream)
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert out == f"out {printable(HOSTILE)}\n" and err == f"node {printable(HOSTILE)}\n"


def test_the_stream_stays_escaping_for_an_unexpected_exceptions_traceback() -> None:
    saved = sys.stdout, sys.stderr
    try:
        with pytest.raises(ValueError), escaped_stdio():
            raise ValueError(HOSTILE)
        assert isinstance(sys.stderr, EscapingStream)
    finally:
        sys.stdout, sys.stderr = saved


@pytest.mark.fuzz
@given(st.text())
def test_no_dangerous_character_survives(text: str) -> None:
    assert not any(dangerous(ch) for ch in printable(text))
    assert not any(dangerous(ch) and ch not in "\n\t" for ch in terminal_text(text))
    cell = csv_cell(text)
    assert not any(dangerous(ch) for ch in cell) and not cell.startswith(("=", "+", "-", "@"))


@pytest.mark.fuzz
@given(st.text().filter(lambda t: "\\" not in t and '"' not in t))
def test_the_escapes_are_json_escapes_that_give_back_the_text(text: str) -> None:
    assert json.loads(f'"{printable(text)}"') == text


@pytest.mark.fuzz
@given(st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)))
def test_json_written_through_the_stream_is_still_the_same_json(doc: object) -> None:
    out = io.StringIO()
    EscapingStream(out).write(json.dumps(doc, ensure_ascii=False))
    assert json.loads(out.getvalue()) == doc
    assert not any(dangerous(ch) and ch not in "\n\t" for ch in out.getvalue())
