"""Durable small-file writes shared by the key, chain state, enrollment record and `attest --out`.

A file is written to a temp file in the same directory, fsync'd, moved into place (or linked, when an existing
file must never be replaced), and the directory is fsync'd: after a crash the file is either the old one or
the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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
