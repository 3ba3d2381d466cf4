"""Envelopes stored compressed: how `attestations.envelope` is encoded, named by `attestations.envelope_codec`.

- 0 `RAW`: the bytes as received. Every row stored before migration `compact_storage`, and an envelope no
  encoding shrinks.
- 1 `ZLIB`: zlib (RFC 1950, the standard library) of the bytes as received.
- 2 `DSSE_ZLIB`: zlib, primed with the preset dictionary `envelope_dictionary.json`, of the envelope's JSON
  around its payload plus the payload decoded from base64 (a signed statement is JSON: out of base64 it
  compresses to less than half, and the dictionary's field names, models and units halve it again: a
  10.6 KB 8-GPU envelope is stored in about 0.7 KB). Rebuilt byte for byte on read; chosen at write only when
  the rebuilt bytes are exactly the bytes received, else 1.
- 3 `COMPACT_FIELDS`: a compact statement as the few fields its row does not already hold, rebuilt from them and
  the row's columns (`compact_fields`; about 115 bytes instead of 380). Chosen at write only for a compact
  statement whose rebuilt bytes are exactly the bytes received; read with the row's columns (`RowFacts`) and
  checked against the row's digest.

The dictionary (a DSSE skeleton and three mock statements, hgx-a100, h20-8x and dgx-h100, as the agent signs
them) is frozen: rows encoded with it decode only with it, so it is pinned by its digest, checked on first use.
A better dictionary would be a new encoding number, never an edit of this one.

Every reader gets the exact bytes as received (signatures verify byte for byte; the transparency log's leaves are
their hashes). A stored value is read as hostile: decompression stops at `MAX_DECODED` bytes (a decompression
bomb cannot exhaust memory) and a row that does not decode is a `StoreError` naming it, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import struct
import zlib
from importlib import resources

from gpucensus.collector.errors import StoreError
from gpucensus.collector.store import compact_fields
from gpucensus.collector.store.compact_fields import RowFacts

RAW, ZLIB, DSSE_ZLIB, COMPACT_FIELDS = 0, 1, 2, 3
MAX_DECODED = 64 * 1024 * 1024  # larger envelopes are stored raw, so every compressed row decodes within this
LEVEL = 6  # against 1: 682 bytes instead of 794 for an 8-GPU report, 4 rows to a SQLite page instead of 3 (-25 %)
_HEADER = struct.Struct(">II")  # DSSE_ZLIB: length of the JSON before the payload, length of the decoded payload
_COLON = re.compile(rb'\s*:\s*"')  # after the key "payload": the payload's opening quote
DICTIONARY = "envelope_dictionary.json"
DICTIONARY_SHA256 = "73e3b241aea88def56eb8c91a651a628d6b2c0e796542e0d60fd0d0e84cd492f"


@functools.cache
def _dictionary() -> bytes:
    data = resources.files("gpucensus.collector.store").joinpath(DICTIONARY).read_bytes()
    if hashlib.sha256(data).hexdigest() != DICTIONARY_SHA256:
        raise StoreError(f"the installed {DICTIONARY} is not the one stored envelopes were compressed with",
                         hint="reinstall gpucensus-collector")  # fmt: skip
    return data


@functools.cache
def _primed() -> zlib._Compress:
    """A compressor primed with the dictionary (copied per envelope: priming costs more than compressing)."""
    return zlib.compressobj(LEVEL, zdict=_dictionary())


def encode(envelope: bytes, row: RowFacts | None = None) -> tuple[int, bytes]:
    """(codec, stored bytes) for an envelope as received: the smallest encoding that rebuilds it exactly. `row`:
    the columns of a compact statement's row (COMPACT_FIELDS is tried only with them)."""
    if len(envelope) > MAX_DECODED:
        return RAW, envelope
    if row is not None:
        fields = compact_fields.pack(envelope, row)
        if fields is not None:
            return COMPACT_FIELDS, fields
    best = (RAW, envelope)
    split = _split(envelope)
    if split is not None:
        compressor = _primed().copy()
        candidate = compressor.compress(split) + compressor.flush()
        if len(candidate) < len(best[1]) and _rebuild(split) == envelope:
            best = (DSSE_ZLIB, candidate)
    if best[0] == RAW:
        candidate = zlib.compress(envelope, LEVEL)
        if len(candidate) < len(envelope):
            best = (ZLIB, candidate)
    return best


def decode(codec: int, stored: bytes, where: str, row: RowFacts | None = None) -> bytes:
    """The envelope as received from its stored form; StoreError naming `where` if the row does not decode.
    `row`: the row's columns, which COMPACT_FIELDS needs (every reader passes them)."""
    if codec == RAW:
        return stored
    if codec == COMPACT_FIELDS:
        if row is None:
            raise StoreError(f"the stored envelope {where} needs its row's columns to be read (a bug in the reader)")
        return compact_fields.unpack(stored, row, where)
    if codec not in (ZLIB, DSSE_ZLIB):
        raise StoreError(f"the stored envelope {where} has an unknown encoding {codec!r}: the store is damaged or "
                         "was written by a newer gpucensus-collector")  # fmt: skip
    inflater = zlib.decompressobj(zdict=_dictionary()) if codec == DSSE_ZLIB else zlib.decompressobj()
    try:
        data = inflater.decompress(stored, MAX_DECODED)
        complete = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except zlib.error as err:
        raise StoreError(f"the stored envelope {where} is damaged: it does not decompress ({err})") from err
    if not complete:
        raise StoreError(f"the stored envelope {where} is damaged: its compressed data is truncated, has trailing "
                         f"bytes, or decodes to more than {MAX_DECODED} bytes")  # fmt: skip
    if codec == ZLIB:
        return data
    try:
        return _rebuild(data)
    except ValueError as err:
        raise StoreError(f"the stored envelope {where} is damaged: {err}") from err


def _split(envelope: bytes) -> bytes | None:
    """The DSSE_ZLIB form before compression, or None when the envelope has no canonical base64 payload."""
    key = envelope.find(b'"payload"')
    opening = _COLON.match(envelope, key + 9) if key >= 0 else None
    if opening is None:
        return None
    start = opening.end()
    end = envelope.find(b'"', start)
    try:  # the base64 alphabet only (a JSON escape is not): the rebuild in `encode` checks the rest
        payload = base64.b64decode(envelope[start:end], validate=True) if end >= 0 else None
    except (binascii.Error, ValueError):
        return None
    if payload is None:
        return None
    return _HEADER.pack(start, len(payload)) + envelope[:start] + payload + envelope[end:]


def _rebuild(split: bytes) -> bytes:
    if len(split) < _HEADER.size:
        raise ValueError("its header is truncated")
    start, length = _HEADER.unpack_from(split)
    body = split[_HEADER.size :]
    if start + length > len(body):
        raise ValueError("its lengths exceed its data")
    return body[:start] + base64.b64encode(body[start : start + length]) + body[start + length :]
