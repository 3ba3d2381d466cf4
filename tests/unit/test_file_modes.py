"""Local files are private: directories are created 0700, state files 0600 (SQLite's -wal and -shm included),
and a private key (node key, TLS keys of agent and collector) that group or others may read is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from gpucensus.agent.chain import ChainStore
from gpucensus.agent.keys import generate_key
from gpucensus.agent.spool import Spool
from gpucensus.agent.tls import read_tls_files
from gpucensus.collector.server import _private_key
from gpucensus.collector.store import open_store
from gpucensus.collector.store.sqlite import DB_FILENAME
from gpucensus.common.errors import KeyError_


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask():
    """The modes must not depend on a careful umask: run with 0000."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_the_spool_directory_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sub" / "spool.db"
    spool = Spool(path, max_bytes=1_000_000)
    spool.append("ab" * 32, 1, b"{}")
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["spool.db", "spool.db-shm", "spool.db-wal"]
    assert {name: mode(path.parent / name) for name in files} == dict.fromkeys(files, 0o600)
    assert mode(path.parent) == mode(tmp_path / "state") == 0o700
    spool.close()


def test_the_chain_state_directory_and_files_are_private(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "keys" / "node.key")
    store = ChainStore(tmp_path / "state", key.keyid)
    with store.locked():
        store.save(store.load())
    assert mode(tmp_path / "state") == 0o700
    assert {p.name: mode(p) for p in (tmp_path / "state").iterdir()} == {"chain.json": 0o600, "chain.lock": 0o600}


def test_the_collector_data_directory_is_0700_and_the_database_files_0600(tmp_path: Path) -> None:
    data = tmp_path / "var" / "collector"
    store = open_store("sqlite", data_dir=str(data))
    try:
        files = sorted(p.name for p in data.iterdir())
        assert files == [DB_FILENAME, f"{DB_FILENAME}-shm", f"{DB_FILENAME}-wal"]
        assert {name: mode(data / name) for name in files} == dict.fromkeys(files, 0o600)
        assert mode(data) == mode(tmp_path / "var") == 0o700
    finally:
        store.close()


def test_keygen_creates_the_missing_key_directory_0700(tmp_path: Path) -> None:
    key = tmp_path / "var" / "lib" / "gpucensus" / "node.key"  # the README's first command on a fresh host
    result = subprocess.run(
        [sys.executable, "-m", "gpucensus.agent.cli", "keygen", "--key", str(key)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 64
    assert mode(key) == 0o600
    for directory in (key.parent, key.parent.parent, key.parent.parent.parent):
        assert mode(directory) == 0o700, directory


def ec_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o644])
def test_the_agent_refuses_a_tls_client_key_others_may_read(tmp_path: Path, loose: int) -> None:
    key = tmp_path / "node-a.key"
    key.write_bytes(ec_key_pem())
    os.chmod(key, loose)
    with pytest.raises(KeyError_) as caught:
        read_tls_files("", "", str(key))
    assert str(key) in caught.value.message and f"{loose:04o}" in caught.value.message
    assert caught.value.hint == f"chmod 600 {key}" and caught.value.exit_code == 4
    os.chmod(key, 0o600)
    assert read_tls_files("", "", str(key)).private_key == key.read_bytes()


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o644])
def test_the_collector_refuses_a_tls_server_key_others_may_read(tmp_path: Path, loose: int) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(ec_key_pem())
    os.chmod(key, loose)
    with pytest.raises(KeyError_) as caught:
        _private_key(str(key))
    assert str(key) in caught.value.message and f"{loose:04o}" in caught.value.message
    assert caught.value.hint == f"chmod 600 {key}" and caught.value.exit_code == 4
    os.chmod(key, 0o600)
    assert _private_key(str(key))[0] == key.read_bytes()
