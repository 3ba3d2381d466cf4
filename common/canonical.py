"""Is this JSON its own RFC 8785 (JCS) form? One strict parse and a C-speed re-encoding, for the verifier.

`common.jcs` canonicalizes with the pure-Python `rfc8785` package: right, but about 0.5 ms for one statement,
four times an Ed25519 verification. Checking a document that should already be canonical needs less: for
gpucensus documents (integers and strings only) the JCS form is `json.dumps` without whitespace or ASCII
escaping, once every object's keys are in UTF-16 order and every integer is within +-(2**53 - 1).
tests/unit/test_verify.py checks this module against `rfc8785` on the hard cases (key order outside the BMP,
control characters, escapes, lone surrogates, integer limits).
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from gpucensus.common import jcs

_JCS_INT_LIMIT = 2**53 - 1  # RFC 8785 serializes numbers as IEEE doubles: larger integers have no exact form


def _no_float(text: str) -> Any:
    raise jcs.CanonicalJsonError(f"float {text}: gpucensus documents carry integers and strings only")


def _no_constant(name: str) -> Any:
    raise jcs.CanonicalJsonError(f"non-standard JSON constant {name}")


def _short_int(digits: str) -> int:
    if len(digits) > 15:  # 2**53 has 16 digits: shorter integers are always within the JCS range
        raise ValueError("a long integer: take the exact path")
    return int(digits)


def parse_canonical(data: bytes) -> tuple[Any, bool]:
    """Parse JSON bytes strictly (as `common.jcs.loads_strict`: UTF-8, no duplicate keys, no floats, no NaN) and
    tell whether they are exactly their RFC 8785 (JCS) form; raises `jcs.CanonicalJsonError` if not strict JSON.

    One C-speed parse and re-encoding instead of the pure-Python `rfc8785` serializer. For documents of integers
    and strings, JCS is `json.dumps` without whitespace or ASCII escaping, with every object's keys in UTF-16
    order and every integer within +-(2**53 - 1). The fast path takes ASCII bytes (keys sort the same by code
    point and by UTF-16) whose integers have at most 15 digits (within the range) and that re-encode to
    themselves (so no key was duplicated); anything else takes the exact path, which also names the problem.
    tests/unit/test_verify.py checks both against `rfc8785` on hard cases.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise jcs.CanonicalJsonError(f"not UTF-8: {err}") from err
    if data.isascii():
        try:
            value = json.loads(text, parse_int=_short_int, parse_float=_no_float, parse_constant=_no_constant)
            if _jcs_dumps(value, sort_keys=True) == data:
                return value, True
        except (ValueError, RecursionError):
            pass  # the exact path below says what is wrong
    return _parse_exact(text, data)


def _jcs_dumps(value: Any, sort_keys: bool = False) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":")).encode("utf-8")


def _parse_exact(text: str, data: bytes) -> tuple[Any, bool]:
    canonical = True

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal canonical
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            duplicate = next(k for k, _ in items if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise jcs.CanonicalJsonError(f"duplicate key {duplicate!r}")
        keys = [k.encode("utf-16-be", "surrogatepass") for k, _ in items]
        canonical = canonical and all(a < b for a, b in pairwise(keys))
        return obj

    def integer(digits: str) -> int:
        nonlocal canonical
        value = int(digits)  # ValueError beyond sys.get_int_max_str_digits(): a malformed document
        canonical = canonical and -_JCS_INT_LIMIT <= value <= _JCS_INT_LIMIT
        return value

    try:
        value = json.loads(
            text, object_pairs_hook=pairs, parse_int=integer, parse_float=_no_float, parse_constant=_no_constant
        )
    except RecursionError as err:
        raise jcs.CanonicalJsonError("nested too deeply") from err
    except jcs.CanonicalJsonError:
        raise
    except ValueError as err:  # json.JSONDecodeError, an integer too long to convert
        raise jcs.CanonicalJsonError(f"not JSON: {err}") from err
    try:
        return value, canonical and _jcs_dumps(value) == data  # keys already in the order the bytes gave
    except UnicodeEncodeError:  # a lone surrogate (from a \\ud800 escape) has no UTF-8 form
        return value, False
    except RecursionError as err:
        raise jcs.CanonicalJsonError("nested too deeply") from err
