"""Node keys on disk: created 0600 and never overwritten; loading refuses unsafe, malformed or foreign keys."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from gpucensus.agent.keys import generate_key, key_id, load_key, public_path
from gpucensus.common.errors import KeyError_


def test_generate_writes_pkcs8_0600_and_spki_pub(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    pub = public_path(path)
    assert pub == tmp_path / "node.key.pub"
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    loaded = load_key(path)
    public = serialization.load_pem_public_key(pub.read_bytes())
    assert loaded.keyid == key.keyid == key_id(public)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.keyid == hashlib.sha256(der).hexdigest()
    assert len(der) == 44  # 12-byte Ed25519 SPKI prefix + 32-byte key


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    generate_key(path)
    before = path.read_bytes()
    with pytest.raises(KeyError_, match="already exists"):
        generate_key(path)
    assert path.read_bytes() == before


def test_existing_pub_alone_blocks_generation_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    public_path(path).write_text("someone else's\n")
    with pytest.raises(KeyError_, match=r"node\.key\.pub already exists"):
        generate_key(path)
    assert not path.exists()


def test_generate_in_a_directory_that_cannot_be_created_is_a_key_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(KeyError_, match=r"cannot create the key directory .*a-file/keys: Not a directory"):
        generate_key(tmp_path / "a-file" / "keys" / "node.key")  # names the directory, not a temporary file


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_accessible_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    generate_key(path)
    os.chmod(path, mode)
    with pytest.raises(KeyError_) as caught:
        load_key(path)
    assert f"{mode:04o}" in caught.value.message
    assert caught.value.hint == f"chmod 600 {path}"


def _write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def test_missing_malformed_encrypted_and_foreign_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError_, match="not found"):
        load_key(tmp_path / "absent.key")
    with pytest.raises(KeyError_, match="not a PEM private key"):
        load_key(_write_private(tmp_path / "junk.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyError_, match="not Ed25519"):
        load_key(_write_private(tmp_path / "rsa.key", pem))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    encrypted = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(KeyError_, match="password-protected"):
        load_key(_write_private(tmp_path / "enc.key", encrypted))
