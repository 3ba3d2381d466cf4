"""Registry validation (pure): identifiers, ISO 3166-1 alpha-2 countries, entity authorizations, enrollment tokens.

Tokens are random (`secrets.token_urlsafe`), shown once, and stored only as their SHA-256 hash; a token enrolls a
fixed number of new node ids (one by default; a site token for a fleet more) and expires (the store counts the
uses down atomically). A token binds only a new node id, unless it was created for
one node id: then only that node id may use it, and it re-keys that node if it is enrolled.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from gpucensus.collector.countries import is_alpha2
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store.base import EnrollmentToken, Entity, Site

AUTHORIZATIONS = ("none", "uveu", "nveu")  # none | Universal VEU | National VEU
TOKEN_BYTES = 32
MAX_TTL = timedelta(days=30)
MAX_USES = 100_000  # one site token for a fleet's nodes
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TTL = re.compile(r"^(\d+)([smhd])$")
_TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def validate_id(kind: str, value: str) -> str:
    if not _ID.fullmatch(value or ""):
        raise ConfigError(
            f"invalid {kind} id {value!r}",
            hint="use 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def validate_country(value: str) -> str:
    """The upper-case alpha-2 code; ConfigError if it is not an officially assigned ISO 3166-1 code."""
    code = (value or "").strip().upper()
    if not is_alpha2(code):
        raise ConfigError(
            f"{value!r} is not an ISO 3166-1 alpha-2 country code",
            hint="use the two-letter code, e.g. US, DE, SG, AE (the United Kingdom is GB; user-assigned codes like XK "
            "are not accepted)",
        )
    return code


def validate_authorization(value: str) -> str:
    auth = (value or "").strip().lower()
    if auth not in AUTHORIZATIONS:
        raise ConfigError(f"unknown entity authorization {value!r}", hint=f"use one of: {', '.join(AUTHORIZATIONS)}")
    return auth


def make_entity(entity_id: str, headquarters: str, authorization: str = "none") -> Entity:
    return Entity(
        validate_id("entity", entity_id), validate_country(headquarters), validate_authorization(authorization)
    )


def make_site(site_id: str, country: str, entity: str) -> Site:
    return Site(validate_id("site", site_id), validate_country(country), validate_id("entity", entity))


def parse_ttl(value: str) -> timedelta:
    """Parse a lifetime such as "90s", "15m", "24h" or "7d" (at most MAX_TTL)."""
    match = _TTL.match((value or "").strip())
    ttl = timedelta(**{_TTL_UNITS[match.group(2)]: int(match.group(1))}) if match else None
    if ttl is None or ttl <= timedelta(0) or ttl > MAX_TTL:
        raise ConfigError(
            f"invalid token lifetime {value!r}",
            hint=f"use a number with s, m, h or d (e.g. 24h), more than 0 and at most {MAX_TTL.days}d",
        )
    return ttl


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token text: the only form in which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_uses(uses: int, node_id: str = "") -> int:
    """How many new node ids a token may enroll: 1..MAX_USES; a token for one node id is single use."""
    if not 1 <= uses <= MAX_USES:
        raise ConfigError(
            f"invalid number of token uses {uses}", hint=f"use 1 to {MAX_USES}: each use enrolls one new node"
        )
    if node_id and uses != 1:
        raise ConfigError(
            f"a token for one node id ({node_id}) is single use, not {uses} uses",
            hint="leave out --uses, or leave out --node-id for a site token that enrolls several new nodes",
        )
    return uses


def new_token(
    site: str, now: datetime, ttl: timedelta, node_id: str = "", uses: int = 1
) -> tuple[str, EnrollmentToken]:
    """A fresh random token (to show once) and the record to store (its hash, site, expiry, how many new node
    ids it may enroll and, for a token that only one node id may use, that node id)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    node = validate_id("node", node_id) if node_id else ""
    record = EnrollmentToken(
        hash_token(token), validate_id("site", site), now, now + ttl, node_id=node, uses=validate_uses(uses, node)
    )
    return token, record
