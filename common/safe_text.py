"""The one place that makes text safe for a terminal (and a spreadsheet): every CLI's output goes through it.

Strings from attestations (GPU names and UUIDs, sites, node ids, finding texts) and from the command line can hold
terminal control sequences ("\\x1b]0;title\\x07", "\\x1b[2J") or bidi overrides that make text read otherwise than
it is. They are shown as JSON-style escapes (`\\u001b`), which keeps JSON output valid and unchanged in meaning:

- `printable(value)`: one value (a table cell, a name in a message): every control character escaped, newlines too,
  so a value cannot start a line of its own.
- `escaped_stdio()`: for the duration of a CLI command, sys.stdout and sys.stderr (and so print, logging and an
  uncaught traceback) escape every control character except newline and tab.
- `csv_cell(value)`: a text cell of CSV output: `printable`, plus a leading ' on a cell a spreadsheet would take
  as a formula (=, +, -, @).

A backslash is not itself escaped: `\\u001b` in the output is either an escaped ESC or those six characters.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

# C0, DEL, C1; the Unicode bidi controls (LRM, RLM, ALM, embeddings/overrides, isolates); line/paragraph
# separators; lone surrogates (which could not even be encoded).
_NOT_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_ALL = re.compile(f"[\x00-\x1f{_NOT_C0}]")
_ALL_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_NOT_C0}]")  # keeps \t (0x09) and \n (0x0a)
FORMULA_PREFIXES = ("=", "+", "-", "@")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(value: object) -> str:
    """`value` as text with every control character (newline and tab included) written as `\\uXXXX`."""
    return _ALL.sub(_escape, str(value))


def terminal_text(text: str) -> str:
    """`text` with every control character except newline and tab written as `\\uXXXX` (whole output lines)."""
    return _ALL_BUT_LINES.sub(_escape, text)


def csv_cell(value: Any) -> Any:
    """A CSV cell: numbers and None unchanged; text `printable`, with a ' before a leading =, +, - or @ so that a
    spreadsheet shows it as text instead of running it as a formula."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class EscapingStream:
    """A text stream that writes through `terminal_text` to the stream it wraps (everything else is delegated)."""

    def __init__(self, stream: TextIO) -> None:
        self.wrapped = stream

    def write(self, text: str) -> int:
        self.wrapped.write(terminal_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


@contextmanager
def escaped_stdio() -> Iterator[None]:
    """sys.stdout and sys.stderr escape control characters until the block ends. When it ends with an unexpected
    exception they stay wrapped, so that the interpreter's traceback (which may quote input) is escaped too."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, EscapingStream):
        sys.stdout = EscapingStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, EscapingStream):
        sys.stderr = EscapingStream(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        sys.stdout, sys.stderr = saved
        raise
    else:
        sys.stdout, sys.stderr = saved
