"""Disk failures as one line: every write of a run goes through :func:`storage_errors`, which turns an OSError
(read-only file system, disk full, no permission, a file where a folder should be) into a StorageError that names
the path and what to do. Files saved before the failure stay: writes are atomic (see kdkit.io.checkpoint)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kdkit.errors import StorageError

_ADVICE = {
    errno.ENOSPC: "the disk is full: free space or choose another output_dir, then rerun (kdkit train and demo: "
                  "with --resume, which keeps what was trained)",
    errno.EDQUOT: "the disk quota is used up: free space or choose another output_dir, then rerun (kdkit train and "
                  "demo: with --resume, which keeps what was trained)",
    errno.EROFS: "the file system is read-only: choose another output_dir",
    errno.EACCES: "no permission: make the directory writable or choose another output_dir",
    errno.EPERM: "no permission: make the directory writable or choose another output_dir",
    errno.ENOTDIR: "a file stands where a folder should be: choose another output_dir",
    errno.EEXIST: "a file stands where a folder should be: choose another output_dir",
}


def describe(err: OSError, path: str | os.PathLike) -> str:
    """One line: what failed where, and what to do."""
    where = err.filename or path
    advice = _ADVICE.get(err.errno or 0, "check the disk and the directory's permissions, or choose another "
                                         "output_dir")
    return f"cannot write {where}: {err.strerror or type(err).__name__}; {advice}"


@contextmanager
def storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError raised inside the block into a one-line StorageError about `path`."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        raise StorageError(describe(err, path)) from None


def check_writable(directory: Path, needed_bytes: int = 0) -> None:
    """Before training: the directory can be created and written, and has room for `needed_bytes` (the expected
    checkpoints), so a full or read-only disk fails now and not after hours of training."""
    with storage_errors(directory):
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".kdkit-write-probe.{os.getpid()}.tmp"
        try:
            probe.write_bytes(b"kdkit")
        finally:
            probe.unlink(missing_ok=True)
        free = shutil.disk_usage(directory).free
    if needed_bytes and free < needed_bytes:
        raise StorageError(f"{directory} has {free / 2**20:.1f} MiB free but the checkpoints need about "
                           f"{needed_bytes / 2**20:.1f} MiB; free space or choose another output_dir")
