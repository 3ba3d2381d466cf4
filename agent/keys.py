"""The node's Ed25519 signing key on disk: generate once (0600, never overwritten), load with checks.

FILE holds the PKCS#8 PEM private key, FILE.pub the SubjectPublicKeyInfo PEM. The key id is the hex SHA-256
of the DER SubjectPublicKeyInfo (docs/formats.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from gpucensus.common import dsse
from gpucensus.common.durable import atomic_write, make_private_dirs, refuse_shared_private_key
from gpucensus.common.errors import KeyError_

PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class NodeKey:
    private_key: Ed25519PrivateKey
    path: Path

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def keyid(self) -> str:
        return key_id(self.public_key)


def public_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def key_id(public_key: Ed25519PublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return dsse.key_id(der)


def generate_key(path: Path) -> NodeKey:
    """Create a new key at `path` and `path`.pub; KeyError_ if either exists or cannot be written."""
    pub = public_path(path)
    for existing in (path, pub):
        if existing.exists() or existing.is_symlink():
            raise KeyError_(
                f"{existing} already exists; refusing to overwrite a node key",
                hint="a new key is a new node identity; move the old files away first if that is what you want",
            )
    try:
        make_private_dirs(path.parent)
    except OSError as err:
        raise KeyError_(f"cannot create the key directory {path.parent}: {err.strerror}") from err
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for target, data, mode in ((path, private_pem, PRIVATE_MODE), (pub, public_pem, 0o644)):
        try:
            atomic_write(target, data, mode=mode, overwrite=False)
        except FileExistsError as err:  # created by someone else since the check above
            raise KeyError_(f"{target} already exists; refusing to overwrite a node key") from err
        except OSError as err:
            raise KeyError_(f"cannot write key file {target}: {err.strerror}") from err
    return NodeKey(private_key, path)


def load_key(path: Path) -> NodeKey:
    """Load the node's private key; KeyError_ if missing, group/world accessible, malformed or not Ed25519."""
    try:
        info = os.stat(path)
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise KeyError_(f"node key {path} not found", hint=f"create one: gpucensus-agent keygen --key {path}") from err
    except OSError as err:
        raise KeyError_(f"cannot read node key {path}: {err.strerror}") from err
    refuse_shared_private_key(path, info, "node key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as err:
        raise KeyError_(f"node key {path} is password-protected", hint="use an unencrypted PKCS#8 key") from err
    except (ValueError, UnicodeError) as err:
        raise KeyError_(f"node key {path} is not a PEM private key", hint="generate one with keygen") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(
            f"node key {path} is a {type(key).__name__.lstrip('_')}, not Ed25519",
            hint="gpucensus signs with Ed25519 keys only; generate one with gpucensus-agent keygen",
        )
    return NodeKey(key, path)
