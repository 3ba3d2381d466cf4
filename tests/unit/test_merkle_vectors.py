"""Every transparency-dev/merkle conformance vector (tests/vectors/merkle/, Apache-2.0): the happy paths verify
and every `wantErr` case is refused with a ProofError."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from gpucensus.common import merkle

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))


def _name(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "", validate=True)


def _proof(vector: dict) -> list[bytes]:
    return [_b64(item) for item in vector["proof"] or []]


def test_the_vectors_are_all_there() -> None:
    assert len(INCLUSION) >= 50 and len(CONSISTENCY) >= 80
    assert any(_load(p)["wantErr"] for p in INCLUSION) and any(not _load(p)["wantErr"] for p in INCLUSION)


@pytest.mark.parametrize("path", INCLUSION, ids=_name)
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_name)
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _proof(v), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)
