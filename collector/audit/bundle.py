"""The audit bundle on disk: one layout, written by `gpucensus-collector export` and read by `gpucensus-audit
verify` (docs/formats.md, "Audit bundle").

Why plain files: a regulator keeps them, hashes them, and checks each piece with standard tools (OpenSSL for the
checkpoint, any DSSE library for an envelope, a few lines of Python for a proof). Writing and reading live
together so the two sides cannot drift. Reading never trusts the bundle: sizes are capped, names must be what
the layout says, and anything unusable is a `BundleError` (exit 2) naming the file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpucensus.collector.errors import ConfigError

FORMAT = "gpucensus-audit-bundle/1"
CHECKPOINT, VKEY, MANIFEST = "checkpoint", "log.vkey", "manifest.json"
ENVELOPES, PROOFS, KEYS, POLICY = "envelopes", "proofs", "keys", "policy"
MAX_FILE_BYTES = {ENVELOPES: 1 << 20, PROOFS: 64 << 10, KEYS: 16 << 10, POLICY: 1 << 20}
MAX_SMALL_FILE = 64 << 10  # checkpoint, log.vkey
MAX_MANIFEST_BYTES = 64 << 20
_INDEX_NAME = re.compile(r"^(0|[1-9][0-9]{0,18})\.json$")
_KEY_NAME = re.compile(r"^([0-9a-f]{64})\.pem$")
_POLICY_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})\.toml$")
NAME_PATTERNS = {ENVELOPES: _INDEX_NAME, PROOFS: _INDEX_NAME, KEYS: _KEY_NAME, POLICY: _POLICY_NAME}


class BundleError(ConfigError):
    """The directory is not a usable audit bundle (a required file missing, unreadable or not of its format)."""


@dataclass(frozen=True)
class Proof:
    log_index: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass
class Bundle:
    """A bundle's contents as bytes; nothing here is verified yet."""

    root: Path
    checkpoint: bytes
    vkey: str
    manifest: dict[str, Any]
    envelopes: dict[int, bytes] = field(default_factory=dict)
    proofs: dict[int, bytes] = field(default_factory=dict)  # raw JSON: parse_proof judges it
    keys: dict[str, bytes] = field(default_factory=dict)  # keyid (from the file name) -> PEM
    policies: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # every file but the manifest, by relative path
    misnamed: list[str] = field(default_factory=list)  # files whose names the layout does not allow


def _read(path: Path, limit: int, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise BundleError(f"{what} {path} is {size} bytes, more than {limit}")
        return path.read_bytes()
    except FileNotFoundError as err:
        raise BundleError(f"{what} {path} is missing", hint="is this a directory written by export?") from err
    except OSError as err:
        raise BundleError(f"cannot read {what} {path}: {err.strerror}") from err


def read_bundle(root: Path) -> Bundle:
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory")
    manifest_bytes = _read(root / MANIFEST, MAX_MANIFEST_BYTES, "manifest")
    try:
        manifest = json.loads(manifest_bytes)
    except (ValueError, RecursionError) as err:
        raise BundleError(f"{root / MANIFEST} is not JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{root / MANIFEST} is not a {FORMAT} manifest")
    checkpoint = _read(root / CHECKPOINT, MAX_SMALL_FILE, "checkpoint")
    vkey_bytes = _read(root / VKEY, MAX_SMALL_FILE, "log verifier key")
    try:
        vkey = vkey_bytes.decode("ascii").strip()
    except UnicodeDecodeError as err:
        raise BundleError(f"{root / VKEY} is not an ASCII verifier key") from err
    bundle = Bundle(root, checkpoint, vkey, manifest, files={CHECKPOINT: checkpoint, VKEY: vkey_bytes})
    try:
        _read_folders(bundle)
    except OSError as err:
        raise BundleError(f"cannot list {err.filename or root}: {err.strerror}") from err
    return bundle


def _read_folders(bundle: Bundle) -> None:
    root = bundle.root
    folders = {ENVELOPES: bundle.envelopes, PROOFS: bundle.proofs, KEYS: bundle.keys, POLICY: bundle.policies}
    for entry in sorted(root.iterdir()):
        if entry.name in (MANIFEST, CHECKPOINT, VKEY):
            continue
        if entry.name not in folders or not entry.is_dir():
            bundle.misnamed.append(entry.name)
            continue
        for path in sorted(entry.iterdir()):
            relative = f"{entry.name}/{path.name}"
            match = NAME_PATTERNS[entry.name].match(path.name)
            if match is None or not path.is_file():
                bundle.misnamed.append(relative)
                continue
            data = _read(path, MAX_FILE_BYTES[entry.name], "bundle file")
            bundle.files[relative] = data
            key = int(match.group(1)) if entry.name in (ENVELOPES, PROOFS) else match.group(1)
            folders[entry.name][key] = data  # type: ignore[index]


def parse_proof(data: bytes) -> Proof:
    """A proof file `{"log_index", "tree_size", "hashes": [base64 …]}`; ValueError says what is wrong."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"not JSON ({err})") from err
    if not isinstance(doc, dict) or set(doc) != {"log_index", "tree_size", "hashes"}:
        raise ValueError('not an object with exactly "log_index", "tree_size", "hashes"')
    index, size, hashes = doc["log_index"], doc["tree_size"], doc["hashes"]
    if any(type(v) is not int or v < 0 for v in (index, size)):
        raise ValueError("log_index and tree_size must be non-negative integers")
    return Proof(index, size, decode_hashes(hashes))


def decode_hashes(hashes: Any) -> tuple[bytes, ...]:
    if not isinstance(hashes, list) or len(hashes) > 128 or not all(isinstance(h, str) for h in hashes):
        raise ValueError("hashes must be a list of at most 128 base64 strings")
    try:
        return tuple(base64.b64decode(h, validate=True) for h in hashes)
    except (binascii.Error, ValueError) as err:
        raise ValueError("a hash is not base64") from err


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def proof_document(log_index: int, tree_size: int, hashes: list[bytes]) -> dict[str, Any]:
    return {"log_index": log_index, "tree_size": tree_size, "hashes": [base64.b64encode(h).decode() for h in hashes]}


def write_bundle(
    root: Path,
    *,
    checkpoint: bytes,
    vkey: str,
    envelopes: Mapping[int, bytes],
    proofs: Mapping[int, list[bytes]],
    tree_size: int,
    keys: Mapping[str, bytes],
    policies: Mapping[str, bytes],
    collector_version: str,
    registry: Mapping[str, list[dict[str, Any]]],
    selection: Mapping[str, str | None],
    references: Sequence[int] = (),
    pruned: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    rejected: Mapping[str, Sequence[tuple[int, int]]] | None = None,
) -> None:
    """Write a bundle into the empty (or new) directory `root`: every file, then the manifest listing them.
    `references`: log indices of full inventories included only because a selected compact statement names them;
    `pruned`: per key, the (first, last) sequences the collector pruned (compact statements past retention);
    `rejected`: per key, the sequences of compact statements it rejected (never stored: holes in the chain)."""
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ConfigError(f"{root} is not empty", hint="export into a new directory")
    files: dict[str, bytes] = {CHECKPOINT: checkpoint, VKEY: (vkey.strip() + "\n").encode("ascii")}
    for index, data in envelopes.items():
        files[f"{ENVELOPES}/{index}.json"] = data
        proof = proof_document(index, tree_size, proofs[index])
        files[f"{PROOFS}/{index}.json"] = json.dumps(proof).encode() + b"\n"
    files.update({f"{KEYS}/{keyid}.pem": pem for keyid, pem in keys.items()})
    files.update({f"{POLICY}/{name}.toml": text for name, text in policies.items()})
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    manifest = {
        "format": FORMAT,
        "collector_version": collector_version,
        "checkpoint_size": tree_size,
        "selection": dict(selection),
        "references": sorted(references),
        "pruned": {keyid: [list(r) for r in ranges] for keyid, ranges in sorted((pruned or {}).items())},
        "rejected": {keyid: [list(r) for r in ranges] for keyid, ranges in sorted((rejected or {}).items())},
        "registry": {kind: list(registry.get(kind, [])) for kind in ("entities", "sites", "nodes")},
        "files": [{"path": p, "sha256": sha256_hex(d), "bytes": len(d)} for p, d in sorted(files.items())],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
