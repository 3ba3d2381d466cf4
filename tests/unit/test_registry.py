"""Registry validation: ISO 3166-1 alpha-2 countries, authorizations, ids, token lifetimes and token hashing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
from gpucensus.collector import registry
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store.base import Entity, Site

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_country_list_is_the_official_one_with_its_source() -> None:
    data = json.loads(resources.files("gpucensus.collector.data").joinpath("iso3166.json").read_text(encoding="utf-8"))
    assert "iso-codes" in data["source"] and data["count"] == len(data["countries"]) == 249
    assert all(len(code) == 2 and code.isupper() for code in data["countries"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [("US", "US"), ("de", "DE"), (" sg ", "SG"), ("AE", "AE"), ("TW", "TW"), ("GB", "GB"), ("CN", "CN")],
)
def test_assigned_codes_are_accepted_and_normalized(given: str, expected: str) -> None:
    assert registry.validate_country(given) == expected


@pytest.mark.parametrize(
    "bad",
    ["UK", "XK", "EU", "ZZ", "USA", "U", "", "D3", "Germany"],  # UK: reserved, GB is assigned; XK/ZZ user-assigned
)
def test_anything_else_is_refused_with_a_hint(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate_country(bad)
    assert "ISO 3166-1 alpha-2" in err.value.message and "GB" in err.value.hint


@pytest.mark.parametrize(("given", "expected"), [("none", "none"), ("UVEU", "uveu"), ("nveu", "nveu")])
def test_authorizations(given: str, expected: str) -> None:
    assert registry.validate_authorization(given) == expected


@pytest.mark.parametrize("bad", ["", "veu", "tier1", "yes"])
def test_unknown_authorizations_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="authorization"):
        registry.validate_authorization(bad)


@pytest.mark.parametrize("good", ["acme", "fra1", "a", "Site_2.b-c", "x" * 64])
def test_ids(good: str) -> None:
    assert registry.validate_id("site", good) == good


@pytest.mark.parametrize("bad", ["", "-lead", "has space", "x" * 65, "semi;colon", "é", "node-1\n", "x\x00"])
def test_bad_ids_are_refused_naming_the_kind(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid site id"):
        registry.validate_id("site", bad)


def test_make_entity_and_site_validate_every_field() -> None:
    assert registry.make_entity("acme", "us", "UVEU") == Entity("acme", "US", "uveu")
    assert registry.make_site("fra1", "de", "acme") == Site("fra1", "DE", "acme")
    with pytest.raises(ConfigError):
        registry.make_site("fra1", "DE", "bad entity")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("24h", timedelta(hours=24)),
     ("7d", timedelta(days=7)), ("30d", timedelta(days=30))],
)  # fmt: skip
def test_ttl(text: str, expected: timedelta) -> None:
    assert registry.parse_ttl(text) == expected


@pytest.mark.parametrize("bad", ["", "24", "0h", "31d", "-1h", "1.5h", "1w", "h"])
def test_bad_ttl_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="token lifetime"):
        registry.parse_ttl(bad)


def test_a_new_token_is_random_and_only_its_hash_is_in_the_record() -> None:
    token, record = registry.new_token("fra1", NOW, timedelta(hours=24))
    other, _ = registry.new_token("fra1", NOW, timedelta(hours=24))
    assert token != other and len(token) >= 43  # 32 random bytes, base64url
    assert record.token_hash == hashlib.sha256(token.encode()).hexdigest() == registry.hash_token(token)
    assert token not in repr(record)
    assert (record.site, record.created_at, record.expires_at, record.used_at) == (
        "fra1", NOW, NOW + timedelta(hours=24), None)  # fmt: skip
