"""The signed payload: an in-toto Statement v1 wrapping the node inventory predicate (docs/formats.md).

Two predicate types share the envelope, the key, the subject rule and the chain fields: the full inventory
(`PREDICATE_TYPE`) and the compact "inventory unchanged" statement (`COMPACT_PREDICATE_TYPE`), whose predicate
names only the node and the full inventory envelope it repeats (`{"sequence": N, "digest": hex}`).

Pure: no files, no clock. The caller passes the sequence, the previous envelope's digest, the timestamp (from
its own clock) and the last checkpoint; `check_statement` is the one definition of the shape, used by the
agent's tests and by the collector's verifier alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://gpucensus.dev/inventory/v1"
COMPACT_PREDICATE_TYPE = "https://gpucensus.dev/inventory-unchanged/v1"
PREDICATE_TYPES = (PREDICATE_TYPE, COMPACT_PREDICATE_TYPE)
FULL, COMPACT = "full", "compact"  # a statement's kind, by its predicate type
PAYLOAD_TYPE = "application/vnd.in-toto+json"  # the DSSE payloadType of an in-toto statement
SUBJECT_PREFIX = "node:"

CHAIN_FIELDS = ("sequence", "previous", "timestamp", "last_checkpoint")
COMPACT_FIELDS = frozenset({"node", "inventory", *CHAIN_FIELDS})  # a compact predicate has exactly these
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def subject_digest(raw_public_key: bytes) -> str:
    """Hex SHA-256 of the node's raw 32-byte Ed25519 public key (the statement subject's digest)."""
    if len(raw_public_key) != 32:
        raise ValueError(f"an Ed25519 raw public key is 32 bytes, got {len(raw_public_key)}")
    return hashlib.sha256(raw_public_key).hexdigest()


def parse_timestamp(timestamp: str) -> datetime:
    """A `YYYY-MM-DDTHH:MM:SSZ` timestamp as a naive datetime, exactly as `datetime.strptime(timestamp,
    TIMESTAMP_FORMAT)` reads it (ValueError when it does not). ASCII text, the only form an agent writes, takes
    `datetime.fromisoformat` (about 20x faster, same answers for this format: tests/unit/test_statement.py);
    anything else takes strptime itself."""
    if timestamp.isascii() and len(timestamp) == 20 and timestamp[10] == "T" and timestamp[19] == "Z":
        if timestamp[4] == timestamp[7] == "-" and timestamp[13] == timestamp[16] == ":":
            if (timestamp[:4] + timestamp[5:7] + timestamp[8:10] + timestamp[11:13] + timestamp[14:16]
                    + timestamp[17:19]).isdigit():  # fmt: skip
                return datetime.fromisoformat(timestamp[:19])
    return datetime.strptime(timestamp, TIMESTAMP_FORMAT)


def format_timestamp(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def build_statement(
    predicate: dict[str, Any],
    *,
    subject_sha256: str,
    sequence: int,
    previous: str,
    timestamp: str,
    last_checkpoint: dict[str, Any] | None = None,
    predicate_type: str = PREDICATE_TYPE,
) -> dict[str, Any]:
    """The in-toto Statement v1 for one attestation; raises ValueError if the result would not pass
    `check_statement` (so the agent never signs a statement the collector must reject). A compact statement's
    predicate is `compact_predicate(...)` with `predicate_type=COMPACT_PREDICATE_TYPE`."""
    clash = [name for name in CHAIN_FIELDS if name in predicate]
    if clash:
        raise ValueError(f"predicate already has chain field(s) {', '.join(clash)}")
    node = predicate.get("node")
    node_id = node.get("id") if isinstance(node, dict) else None
    if not isinstance(node_id, str) or not node_id:
        raise ValueError("predicate.node.id must be a non-empty string")
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": SUBJECT_PREFIX + node_id, "digest": {"sha256": subject_sha256}}],
        "predicateType": predicate_type,
        "predicate": {
            **predicate,
            "sequence": sequence,
            "previous": previous,
            "timestamp": timestamp,
            "last_checkpoint": dict(last_checkpoint or {}),
        },
    }
    problems = check_statement(statement)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    return statement


def compact_predicate(node_id: str, inventory_sequence: int, inventory_digest: str) -> dict[str, Any]:
    """The predicate of a compact statement (without its chain fields): the node and the full inventory envelope
    it repeats, by that envelope's sequence and digest (hex SHA-256 of its exact bytes)."""
    return {"node": {"id": node_id}, "inventory": {"sequence": inventory_sequence, "digest": inventory_digest}}


def statement_kind(statement: dict[str, Any]) -> str:
    """FULL or COMPACT, by the predicate type of a statement that passed `check_statement`."""
    return COMPACT if statement.get("predicateType") == COMPACT_PREDICATE_TYPE else FULL


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_checkpoint(checkpoint: Any) -> str:
    if not isinstance(checkpoint, dict):
        return "predicate.last_checkpoint must be an object"
    if not checkpoint:
        return ""
    if set(checkpoint) != {"size", "root"}:
        return "predicate.last_checkpoint must be {} or have exactly size and root"
    if not _is_int(checkpoint["size"]) or checkpoint["size"] < 0:
        return "predicate.last_checkpoint.size must be a non-negative integer"
    root = checkpoint["root"]
    try:
        if not isinstance(root, str) or len(base64.b64decode(root, validate=True)) != 32:
            return "predicate.last_checkpoint.root must be the base64 of a 32-byte hash"
    except binascii.Error:
        return "predicate.last_checkpoint.root is not valid base64"
    return ""


def _check_chain_fields(predicate: dict[str, Any]) -> list[str]:
    problems = []
    sequence, previous = predicate.get("sequence"), predicate.get("previous")
    if not _is_int(sequence) or sequence < 1:
        problems.append("predicate.sequence must be an integer >= 1")
    if not isinstance(previous, str) or not (previous == "" or _HEX64.fullmatch(previous)):
        problems.append("predicate.previous must be empty or 64 lower-case hex digits")
    elif sequence == 1 and previous:
        problems.append("predicate.previous must be empty for sequence 1")
    timestamp = predicate.get("timestamp")
    if not isinstance(timestamp, str) or not _TIMESTAMP.fullmatch(timestamp):
        problems.append("predicate.timestamp must be YYYY-MM-DDTHH:MM:SSZ")
    else:
        try:
            parse_timestamp(timestamp)
        except ValueError:
            problems.append(f"predicate.timestamp {timestamp!r} is not a valid date and time")
    checkpoint_problem = _check_checkpoint(predicate.get("last_checkpoint"))
    if checkpoint_problem:
        problems.append(checkpoint_problem)
    return problems


def _check_compact(predicate: dict[str, Any]) -> list[str]:
    """Shape problems of a compact predicate beyond the chain fields: exactly `node: {id}` and `inventory:
    {sequence, digest}` besides them, the named sequence below the statement's own."""
    problems = []
    unknown = sorted(set(predicate) - COMPACT_FIELDS)
    if unknown:
        problems.append(f"predicate has unknown field(s) {', '.join(map(repr, unknown))}")
    node = predicate.get("node")
    if isinstance(node, dict) and set(node) != {"id"}:
        problems.append("predicate.node must have exactly id")
    inventory = predicate.get("inventory")
    if not (isinstance(inventory, dict) and set(inventory) == {"sequence", "digest"}):
        return [*problems, "predicate.inventory must be an object with exactly sequence and digest"]
    named, digest = inventory["sequence"], inventory["digest"]
    if not _is_int(named) or named < 1:
        problems.append("predicate.inventory.sequence must be an integer >= 1")
    elif _is_int(predicate.get("sequence")) and named >= predicate["sequence"]:
        problems.append(f"predicate.inventory.sequence {named} must be below the statement's own sequence")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        problems.append("predicate.inventory.digest must be 64 lower-case hex digits")
    return problems


def check_statement(statement: Any) -> list[tuple[str, str]]:
    """Every shape problem of a parsed statement, as (reason id, message); empty when well formed.

    Reason ids: `statement-type`, `predicate-type`, `statement-shape`, `compact-shape` (a compact statement's
    predicate: an unknown field, a wrong type, a named inventory that is not an earlier envelope).
    """
    if not isinstance(statement, dict):
        return [("statement-shape", "statement is not a JSON object")]
    problems: list[tuple[str, str]] = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(("statement-type", f"_type is {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}"))
    predicate_type = statement.get("predicateType")
    if predicate_type not in PREDICATE_TYPES:
        expected = " or ".join(map(repr, PREDICATE_TYPES))
        problems.append(("predicate-type", f"predicateType is {predicate_type!r}, expected {expected}"))
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        return [*problems, ("statement-shape", "predicate must be an object")]
    shape = _check_chain_fields(predicate)
    node = predicate.get("node")
    node_id = node.get("id") if isinstance(node, dict) else None
    if not isinstance(node_id, str) or not node_id:
        shape.append("predicate.node.id must be a non-empty string")
    subject = statement.get("subject")
    if not (isinstance(subject, list) and len(subject) == 1 and isinstance(subject[0], dict)):
        shape.append("subject must be a list of exactly one entry")
    else:
        entry = subject[0]
        if isinstance(node_id, str) and entry.get("name") != SUBJECT_PREFIX + node_id:
            shape.append(f"subject name {entry.get('name')!r} does not match node id {node_id!r}")
        digest = entry.get("digest")
        if not (isinstance(digest, dict) and set(digest) == {"sha256"} and _HEX64.fullmatch(str(digest["sha256"]))):
            shape.append("subject digest must be exactly {sha256: 64 lower-case hex digits}")
    problems.extend(("statement-shape", message) for message in shape)
    if predicate_type == COMPACT_PREDICATE_TYPE:
        problems.extend(("compact-shape", message) for message in _check_compact(predicate))
        return problems
    inventory_shape = []
    for name in ("driver", "totals"):
        if not isinstance(predicate.get(name), dict):
            inventory_shape.append(f"predicate.{name} must be an object")
    for name in ("devices", "pci_functions"):
        if not isinstance(predicate.get(name), list):
            inventory_shape.append(f"predicate.{name} must be a list")
    problems.extend(("statement-shape", message) for message in inventory_shape)
    return problems
