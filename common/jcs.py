"""RFC 8785 JSON Canonicalization Scheme (JCS) for statements and envelopes: a thin wrapper over `rfc8785`.

gpucensus documents carry integers and strings only, so a float anywhere is a programming error (TPP is an
integer, performance density is `pd_milli`); it is rejected here with the path to the offending value rather
than canonicalized into a form other tools would read differently.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785


class CanonicalJsonError(ValueError):
    """The value cannot be a gpucensus canonical JSON document (a float, a non-string key, an unsafe integer)."""


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        raise CanonicalJsonError(f"float at {path} ({value!r}): gpucensus documents carry integers and strings only")
    if isinstance(value, int):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJsonError(f"non-string key {key!r} at {path}")
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    raise CanonicalJsonError(f"unsupported type {type(value).__name__} at {path}")


def canonical_bytes(obj: Any) -> bytes:
    """The JCS (RFC 8785) bytes of `obj`; raises CanonicalJsonError for floats or other non-JSON values."""
    try:
        _check(obj, "$")
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as err:
        raise CanonicalJsonError(str(err)) from err
    except RecursionError as err:
        raise CanonicalJsonError("nested too deeply") from err


def _reject_constant(name: str) -> Any:
    raise CanonicalJsonError(f"non-standard JSON constant {name}")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise CanonicalJsonError(f"duplicate key {key!r}")
        result[key] = value
    return result


def loads_strict(data: bytes) -> Any:
    """Parse JSON bytes, rejecting invalid UTF-8, duplicate keys, NaN/Infinity and floats.

    Raises CanonicalJsonError (a ValueError) on any of these.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CanonicalJsonError(f"not UTF-8: {err}") from err
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
        _check(value, "$")
    except CanonicalJsonError:
        raise
    except json.JSONDecodeError as err:
        raise CanonicalJsonError(f"not JSON: {err}") from err
    except RecursionError as err:
        raise CanonicalJsonError("nested too deeply") from err
    except ValueError as err:  # e.g. an integer beyond Python's digit limit for int()
        raise CanonicalJsonError(f"not acceptable JSON: {err}") from err
    return value


def is_canonical(data: bytes) -> bool:
    """True if `data` parses (strictly) and equals the JCS form of itself."""
    try:
        return canonical_bytes(loads_strict(data)) == data
    except CanonicalJsonError:
        return False
