"""A strict reader over a parsed TOML/JSON document: every error is a `ConfigError` naming the file and the key.

Used by the pack and scenario parsers so both report mistakes the same way ("FILE: limits.uveu.tier1_min_share:
expected a quoted decimal ...").
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from gpucensus.collector.countries import is_alpha2
from gpucensus.collector.errors import ConfigError
from gpucensus.common.catalogue import exact_decimal

_MISSING = object()
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Reader:
    def __init__(self, doc: Any, file: str, path: str = "") -> None:
        self.file = file
        self.path = path
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.where}: expected a table/object, got {_kind(doc)}")
        self.doc = doc

    @property
    def where(self) -> str:
        return f"{self.file}: {self.path}" if self.path else self.file

    def key(self, name: str) -> str:
        return f"{self.file}: {self.path}.{name}" if self.path else f"{self.file}: {name}"

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: {message}")

    def allow(self, *names: str) -> None:
        unknown = sorted(set(self.doc) - set(names))
        if unknown:
            raise ConfigError(
                f"{self.key(unknown[0])}: unknown key", hint=f"known keys here: {', '.join(sorted(names))}"
            )

    def has(self, name: str) -> bool:
        return name in self.doc

    def _get(self, name: str, default: Any) -> Any:
        if name in self.doc:
            return self.doc[name]
        if default is _MISSING:
            raise self.fail(name, "missing (required)")
        return default

    def string(self, name: str, default: Any = _MISSING) -> str:
        value = self._get(name, default)
        if not isinstance(value, str) or (not value and default is _MISSING):
            raise self.fail(name, f"expected a non-empty string, got {_kind(value)}")
        return value

    def integer(self, name: str, default: Any = _MISSING, minimum: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"expected true or false, got {_kind(value)}")
        return value

    def date(self, name: str, required: bool = True) -> Any:
        if name not in self.doc and not required:
            return None
        return parse_date(self._get(name, _MISSING), self.key(name))

    def share(self, name: str, default: Any = _MISSING) -> Any:
        """A fraction in [0, 1], written as a quoted decimal ("0.75") so it is exact."""
        value = self._get(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(name, f'expected a quoted decimal such as "0.75" (exact), got {_kind(value)}')
        try:
            result = exact_decimal(value)  # not Fraction(value): "1e999999999" would take hours
        except ValueError:
            raise self.fail(name, f"not a decimal number: {value!r}") from None
        if not 0 <= result <= 1:
            raise self.fail(name, f"must be between 0 and 1, got {value}")
        return result

    def strings(self, name: str, default: Any = _MISSING) -> list[str]:
        value = self._get(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"expected a list of strings, got {_kind(value)}")
        return value

    def countries(self, name: str, default: Any = _MISSING) -> list[str]:
        codes = self.strings(name, default)
        for code in codes:
            self.check_country(name, code)
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise self.fail(name, f"listed twice: {', '.join(dupes)}")
        return codes

    def country(self, name: str) -> str:
        code = self.string(name)
        self.check_country(name, code)
        return code

    def check_country(self, name: str, code: str) -> None:
        if not is_alpha2(code):
            raise self.fail(name, f"{code!r} is not an ISO 3166-1 alpha-2 country code (upper case, e.g. 'DE')")

    def country_keys(self) -> list[str]:
        for code in self.doc:
            self.check_country(code, code)
        return sorted(self.doc)

    def tiers(self, name: str, default: Any = _MISSING) -> tuple[int, ...]:
        value = self._get(name, default)
        if not isinstance(value, list) or any(isinstance(v, bool) or v not in (1, 2, 3) for v in value):
            raise self.fail(name, f"expected a list of tiers (1, 2, 3), got {value!r}")
        return tuple(value)

    def table(self, name: str, required: bool = True) -> Reader:
        path = f"{self.path}.{name}" if self.path else name
        if name not in self.doc and not required:
            return Reader({}, self.file, path)
        return Reader(self._get(name, _MISSING), self.file, path)

    def tables(self, name: str, default: Any = _MISSING) -> list[Reader]:
        value = self._get(name, default)  # required unless a default is given: a missing list is an error
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list of tables/objects, got {_kind(value)}")
        base = f"{self.path}.{name}" if self.path else name
        return [Reader(item, self.file, f"{base}[{i}]") for i, item in enumerate(value)]


def parse_date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        raise ConfigError(f"{where}: expected a date (YYYY-MM-DD), got a date-time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and (parsed := iso_date(value)) is not None:
        return parsed
    raise ConfigError(f"{where}: expected a date (YYYY-MM-DD), got {_kind(value)}")


def iso_date(text: str) -> date | None:
    """A calendar date written exactly YYYY-MM-DD, else None (Python 3.11's `date.fromisoformat` would also take
    "20260101" and week dates such as "2026-W01-1", which no one writes in a compliance file on purpose)."""
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
