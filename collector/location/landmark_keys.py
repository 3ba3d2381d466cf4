"""A landmark's Ed25519 key on disk: FILE (PKCS#8 PEM, 0600, never overwritten) and FILE.pub (SPKI PEM)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from gpucensus.common.durable import atomic_write, refuse_shared_private_key
from gpucensus.common.errors import KeyError_
from gpucensus.common.verify import public_key_from_pem


def generate(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for target, data, mode in ((path, private, 0o600), (path.with_name(path.name + ".pub"), public, 0o644)):
        try:
            atomic_write(target, data, mode=mode, overwrite=False)
        except FileExistsError as err:
            raise KeyError_(f"{target} already exists; refusing to overwrite a landmark key") from err
        except OSError as err:
            raise KeyError_(f"cannot write {target}: {err.strerror}") from err
    return key


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        info, data = os.stat(path), path.read_bytes()
    except OSError as err:
        raise KeyError_(
            f"cannot read landmark key {path}: {err.strerror}",
            hint=f"create one: gpucensus-collector landmark keygen --key {path}",
        ) from err
    refuse_shared_private_key(path, info, "landmark key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError, UnicodeError) as err:
        raise KeyError_(f"landmark key {path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"landmark key {path} is not an Ed25519 key")
    return key


def load_public(path: Path) -> tuple[Ed25519PublicKey, str]:
    """The public key in `path` and its PEM text."""
    try:
        pem = path.read_text(encoding="ascii")
        return public_key_from_pem(pem.encode()), pem
    except OSError as err:
        raise KeyError_(f"cannot read public key {path}: {err.strerror}") from err
    except (ValueError, UnicodeError) as err:
        raise KeyError_(f"{path} is not an Ed25519 public key in PEM form", hint="use the FILE.pub of keygen") from err
