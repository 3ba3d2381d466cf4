"""Durable small-file writes shared by the key, chain state, enrollment record and `attest --out`, and the
creation of private directories (0700) and files (0600) for the agent's and the collector's state.

A file is written to a temp file in the same directory, fsync'd, moved into place (or linked, when an existing
file must never be replaced), and the directory is fsync'd: after a crash the file is either the old one or
the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and every missing parent with mode 0700 (existing ones are left as they are)."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created by someone else meanwhile
            os.mkdir(candidate, PRIVATE_DIR_MODE)


def create_private_file(path: Path) -> bool:
    """Create `path` empty with mode 0600 (its directory 0700) unless it exists; True if it was created.

    SQLite gives its -wal and -shm files the mode of the database file, so a database created this way before
    `sqlite3.connect` keeps all three private whatever the umask."""
    make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, data: bytes, mode: int) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as f:  # a buffered file writes everything, short writes included
            f.write(data)
            f.flush()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    os.close(fd)
    return Path(name)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, overwrite: bool = True) -> None:
    """Write `data` to `path` atomically and durably. With overwrite=False, FileExistsError if it exists
    (the file is linked into place, so an existing file is never replaced)."""
    temp = _write_temp(path.parent, data, mode)
    try:
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)
            os.unlink(temp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)
