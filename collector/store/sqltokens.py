"""The SQL both stores share, part 2a: listing, revoking and auditing enrollment tokens.

A token is created (`add_token`) and used (`_consume`, inside an enrolment's transaction) in sqlbase; here is
what an operator sees of it: every token with its uses left, the record of each use, and revocation by its
public id (the first 12 hex digits of its hash: the token itself is never stored).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from gpucensus.collector.errors import ConfigError
from gpucensus.collector.store.base import TOKEN_ID_LENGTH, EnrollmentToken, RecordNotFoundError, TokenUse
from gpucensus.collector.store.sqlbase import where_equal
from gpucensus.collector.store.sqlfindings import SqlFindings

_TOKEN_COLUMNS = "token_hash, site, created_at, expires_at, used_at, node_id, uses_total, uses_left, revoked_at"
_PUBLIC_ID = re.compile(rf"^[0-9a-f]{{{TOKEN_ID_LENGTH},64}}$")


class SqlTokens(SqlFindings):
    def list_tokens(self) -> list[EnrollmentToken]:
        with self._tx(False) as cur:
            rows = cur.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_at DESC, token_hash"
            ).fetchall()
        return [self._token(row) for row in rows]

    def token_uses(self, token_hash: str | None = None) -> list[TokenUse]:
        columns = "token_hash, node_id, keyid, used_at"
        sql, params = where_equal(f"SELECT {columns} FROM token_uses", "token_hash", token_hash)
        with self._tx(False) as cur:
            rows = cur.execute(sql + " ORDER BY id", params).fetchall()
        return [TokenUse(r[0], r[1], r[2], self._dt(r[3])) for r in rows]  # type: ignore[arg-type]

    def find_token(self, public_id: str) -> EnrollmentToken:
        with self._tx(False) as cur:
            return self._find(cur, public_id)

    def revoke_token(self, public_id: str, now: datetime) -> EnrollmentToken:
        with self._tx(True) as cur:
            token = self._find(cur, public_id)
            if token.revoked_at is None:
                cur.execute(
                    "UPDATE enrollment_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                    (self._t(now), token.token_hash),
                )
        return token

    def _find(self, cur: Any, public_id: str) -> EnrollmentToken:
        prefix = (public_id or "").strip().lower()
        if not _PUBLIC_ID.fullmatch(prefix):
            raise ConfigError(
                f"{public_id!r} is not a token id",
                hint=f"use the {TOKEN_ID_LENGTH} hex digits in the id column of: gpucensus-collector token list",
            )
        rows = cur.execute(
            f"SELECT {_TOKEN_COLUMNS} FROM enrollment_tokens WHERE substr(token_hash, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchall()
        if len(rows) != 1:
            what = "no token" if not rows else f"{len(rows)} tokens"
            raise RecordNotFoundError(
                f"{what} with id {prefix}", hint="see the id column of: gpucensus-collector token list"
            )
        return self._token(rows[0])

    def _token(self, r: tuple) -> EnrollmentToken:
        return EnrollmentToken(
            r[0],
            r[1],
            self._dt(r[2]),
            self._dt(r[3]),
            self._dt(r[4]),
            r[5],
            r[6],
            r[7],
            self._dt(r[8]),  # type: ignore[arg-type]
        )
