"""Writes that either complete or raise, and files that appear whole or not at all.

os.write may write fewer bytes than asked (a full disk, a signal), and a silently short write loses
data; a file written in place can be read, or left behind by a kill, half written."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"  # every write in progress; the cleanups of interrupted writes look for it


def write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def temp_path(path) -> Path:
    """The temporary name of a write in progress beside `path`: hidden, unique to this process and
    call (concurrent writers of one path never share it), recognisable by TMP_PREFIX."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}-{path.name}")


def fsync_path(path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path, sync_dir: bool = False):
    """Yield a temporary path beside `path` to write; when the block ends normally it is renamed onto
    `path` (readers see the old file or the new one, never part of one), otherwise removed. A writer
    that needs durability syncs its own file; `sync_dir` then syncs the directory after the rename."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    if sync_dir:
        fsync_path(path.parent, directory=True)


_WARNED: set = set()


def warn_once(logger, cause, message: str, *args) -> bool:
    """Log a warning the first time `cause` (e.g. ("store", errno)) occurs in this process: a full disk
    would otherwise repeat the same line for every candidate. Returns whether it logged."""
    if cause in _WARNED:
        return False
    _WARNED.add(cause)
    logger.warning(message, *args)
    return True
