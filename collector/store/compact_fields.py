"""A compact statement stored as the fields its row does not already hold (`envelopes.COMPACT_FIELDS`).

A compact statement (docs/formats.md, "Compact statement") is about 1.1 KB as received and 380 bytes compressed,
yet almost all of it repeats its own row: the key id, the sequence, the previous digest, the digest of the full
inventory it names and the node id are columns, and the rest is fixed text. Its payload is canonical JSON
(checked at ingest), so the exact bytes follow from those columns and five fields: the signature, the subject's
digest (of the node's public key), the timestamp (whole seconds), the named inventory's sequence and
`last_checkpoint` (its JCS bytes). Stored, in this order:

    1 byte   length of the signature        n bytes  the signature (base64-decoded)
    32 bytes the subject's SHA-256          8 bytes  the timestamp, seconds since the epoch (signed, big-endian)
    8 bytes  the named inventory's sequence  the rest the JCS bytes of `last_checkpoint`

about 115 bytes in all. `pack` keeps a statement this way only when `render` from those fields rebuilds exactly
the bytes received (anything else, an envelope signed by another tool with other spacing or key order, is stored
as before); `unpack` rebuilds and then checks the rebuilt bytes against the row's `digest` (the SHA-256 of the
envelope as received), so a damaged field, or a row whose columns were edited, is a StoreError naming the row,
never other bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpucensus.collector.errors import StoreError
from gpucensus.common.jcs import CanonicalJsonError, canonical_bytes

# Frozen, like the layout: stored rows rebuild only with exactly these (a new statement format would be a new
# encoding number, never an edit here), so they are copies rather than imports of common.statement's.
_FIXED = struct.Struct(">32sqQ")  # subject digest, timestamp, inventory sequence (after the signature)
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # common.statement.TIMESTAMP_FORMAT
_PREDICATE_TYPE = "https://gpucensus.dev/inventory-unchanged/v1"
_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
_PAYLOAD_TYPE = "application/vnd.in-toto+json"


# the columns of RowFacts, in its order, for a SELECT (`row_facts(*values)`)
FACTS = "keyid, sequence, previous, inventory_digest, node_id, digest"


@dataclass(frozen=True)
class RowFacts:
    """The columns of an `attestations` row a compact statement is rebuilt from, as the store returns them."""

    keyid: str
    sequence: int
    previous: str
    inventory_digest: str
    node_id: str
    digest: str  # hex SHA-256 of the envelope as received: the check of every rebuild


def row_facts(keyid: str, sequence: Any, previous: str, inventory_digest: str, node_id: str, digest: str) -> RowFacts:
    """RowFacts from the columns of `FACTS` as a cursor returns them."""
    return RowFacts(keyid, int(sequence), previous, inventory_digest, node_id, digest)


def pack(envelope: bytes, row: RowFacts) -> bytes | None:
    """The stored form of a compact statement, or None when its bytes are not exactly `render`'s."""
    try:
        outer = json.loads(envelope)
        statement = json.loads(base64.b64decode(outer["payload"], validate=True))
        signature = base64.b64decode(outer["signatures"][0]["sig"], validate=True)
        subject = bytes.fromhex(statement["subject"][0]["digest"]["sha256"])
        predicate = statement["predicate"]
        moment = datetime.strptime(predicate["timestamp"], _TIMESTAMP).replace(tzinfo=UTC)
        inventory_sequence = predicate["inventory"]["sequence"]
        last_checkpoint = canonical_bytes(predicate["last_checkpoint"])
        if len(subject) != 32 or len(signature) > 255 or type(inventory_sequence) is not int:
            return None
        stored = bytes([len(signature)]) + signature + _FIXED.pack(subject, int(moment.timestamp()),
                                                                   inventory_sequence) + last_checkpoint  # fmt: skip
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError, RecursionError,
            struct.error, binascii.Error, CanonicalJsonError):  # fmt: skip
        return None
    try:
        rebuilt = unpack(stored, row, "being stored")
    except StoreError:
        return None
    return stored if rebuilt == envelope else None


def unpack(stored: bytes, row: RowFacts, where: str) -> bytes:
    """The envelope as received, rebuilt from `stored` and the row; StoreError naming `where` if it is not."""
    if not stored or len(stored) < 1 + stored[0] + _FIXED.size:
        raise StoreError(f"the stored envelope {where} is damaged: its fields are truncated")
    length = stored[0]
    signature = stored[1 : 1 + length]
    subject, seconds, inventory_sequence = _FIXED.unpack_from(stored, 1 + length)
    last_checkpoint = stored[1 + length + _FIXED.size :]
    try:
        envelope = render(row, signature, subject, seconds, inventory_sequence, last_checkpoint)
    except (ValueError, OverflowError, OSError, CanonicalJsonError) as err:
        raise StoreError(f"the stored envelope {where} is damaged: {err}") from err
    if hashlib.sha256(envelope).hexdigest() != row.digest:
        raise StoreError(f"the stored envelope {where} is damaged: its fields do not rebuild the envelope received "
                         "(the SHA-256 differs from the row's digest)")  # fmt: skip
    return envelope


def render(
    row: RowFacts, signature: bytes, subject: bytes, seconds: int, inventory_sequence: int, last_checkpoint: bytes
) -> bytes:
    """The envelope of a compact statement as the agent signs it (JCS payload and envelope) from its fields."""
    node = canonical_bytes(row.node_id)
    payload = b"".join((
        b'{"_type":', canonical_bytes(_STATEMENT_TYPE),
        b',"predicate":{"inventory":{"digest":', canonical_bytes(row.inventory_digest),
        b',"sequence":', str(inventory_sequence).encode(),
        b'},"last_checkpoint":', last_checkpoint,
        b',"node":{"id":', node,
        b'},"previous":', canonical_bytes(row.previous),
        b',"sequence":', str(row.sequence).encode(),
        b',"timestamp":', canonical_bytes(datetime.fromtimestamp(seconds, UTC).strftime(_TIMESTAMP)),
        b'},"predicateType":', canonical_bytes(_PREDICATE_TYPE),
        b',"subject":[{"digest":{"sha256":', canonical_bytes(subject.hex()),
        b'},"name":', canonical_bytes("node:" + row.node_id), b"}]}",
    ))  # fmt: skip
    return b"".join((
        b'{"payload":"', base64.b64encode(payload),
        b'","payloadType":', canonical_bytes(_PAYLOAD_TYPE),
        b',"signatures":[{"keyid":', canonical_bytes(row.keyid),
        b',"sig":"', base64.b64encode(signature), b'"}]}',
    ))  # fmt: skip
