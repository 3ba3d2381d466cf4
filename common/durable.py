"""Durable small-file writes shared by the key, chain state, enrollment record and `attest --out`, and the
creation of private directories (0700) and SQLite files (0600) for the agent's and the collector's state.

A file is written to a temp file in the same directory, fsync'd, moved into place (or linked, when an existing
file must never be replaced), and the directory is fsync'd: after a crash the file is either the old one or
the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import tempfile
from pathlib import Path

from gpucensus.common.errors import KeyError_

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


def create_sqlite_file(path: Path) -> bool:
    """Create an empty WAL-mode SQLite database at `path`, mode 0600 (its directory 0700), unless one exists;
    True if this call created it.

    The file appears complete (its 4096-byte header written) or not at all: it is prepared under a temporary
    name and linked into place, so an empty (0-byte) database file is never one of ours being created, and
    several processes starting together never see one. SQLite gives the -wal and -shm files the mode of the
    database file, so all three stay private whatever the umask."""
    make_private_dirs(path.parent)
    if path.exists():
        return False
    temp = _write_temp(path.parent, b"", PRIVATE_FILE_MODE)
    try:
        db = sqlite3.connect(temp)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # writes the header page
        finally:
            db.close()
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


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


def refuse_shared_private_key(path: str | Path, info: os.stat_result, what: str) -> None:
    """KeyError_ (exit 4) naming the file and the fix if group or others have any permission on a private key."""
    if info.st_mode & 0o077:
        raise KeyError_(
            f"{what} {path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
