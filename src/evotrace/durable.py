"""Writes that either complete or raise: os.write may write fewer bytes than asked (a full disk, a
signal), and a silently short write loses data."""

from __future__ import annotations

import os


def write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


_WARNED: set = set()


def warn_once(logger, cause, message: str, *args) -> bool:
    """Log a warning the first time `cause` (e.g. ("store", errno)) occurs in this process: a full disk
    would otherwise repeat the same line for every candidate. Returns whether it logged."""
    if cause in _WARNED:
        return False
    _WARNED.add(cause)
    logger.warning(message, *args)
    return True
