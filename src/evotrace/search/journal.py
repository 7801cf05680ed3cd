"""The master's append-only journal: a fingerprint of the spec first, then one JSON line when a
candidate is created and one when its result is gathered. It is the only file the search writes while
running: a few hundred bytes per candidate handed to the kernel (no fsync), which survive a SIGKILL of
the process and let a restarted search continue from every completed candidate.

A lock file beside it (`search.lock`, flock) keeps a second master off the same journal for the first
one's lifetime."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from ..durable import write_all

log = logging.getLogger("evotrace.search")

# keys that may change between a run and its resume: they affect speed, never the search itself
RESUMABLE = ("search.workers", "search.torch_threads")


class JournalError(RuntimeError):
    """A journal that cannot be resumed safely; the message says where and what to do."""


class SearchLocked(RuntimeError):
    """Another master holds the search's lock."""


def fingerprint(spec: dict) -> dict:
    """The spec flattened to dotted keys, less the keys a resume may change (RESUMABLE)."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif prefix not in RESUMABLE:
            flat[prefix] = value

    walk("", spec)
    return json.loads(json.dumps(flat))  # the form it takes after a round trip through the journal


def changed_keys(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))


class Journal:
    def __init__(self, path):
        self.path = Path(path)
        self._fd = None

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def read(self) -> list[dict]:
        """All records. A last line cut short by a kill (no newline) is ignored; any other unreadable
        line raises JournalError naming its line number and byte offset, since every record after it
        would otherwise be lost."""
        records = []
        offset = 0
        with open(self.path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):
                    break  # the partial tail of an interrupted append: open() trims it
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict) or "e" not in record:
                        raise ValueError("not a journal record")
                except ValueError as err:
                    raise JournalError(
                        f"{self.path}: line {number} (byte offset {offset}) is not a journal record ({err}): "
                        f"{line[:120]!r}. Records after it would be lost, so the search will not resume. Repair "
                        f"or delete that line (e.g. split a glued line in two) and rerun, or delete the journal "
                        f"to start afresh"
                    ) from None
                records.append(record)
                offset += len(line)
        return records

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._truncate_partial_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)

    def _truncate_partial_tail(self) -> None:
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            log.warning("%s: dropping a partial last record (%d bytes) left by an interrupted write",
                        self.path, len(data) - keep)
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)

    def append(self, records: list[dict]) -> None:
        """Write every record or raise (disk full, quota): a short write is never ignored."""
        if not records:
            return
        if self._fd is None:
            raise JournalError(f"{self.path}: journal is closed (an earlier write failed?)")
        data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
        try:
            write_all(self._fd, data)
        except OSError as err:
            self.close()  # a partial line may be on disk: appending after it would glue two records
            raise JournalError(f"{self.path}: writing {len(records)} record(s) failed: {err}. The search stops; "
                               f"rerun it to resume from the records already written") from err

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def retire(self) -> None:
        """Keep the journal of a finished search beside its trace, out of the way of a fresh start."""
        self.close()
        if self.path.exists():
            os.replace(self.path, self.path.with_suffix(".done.jsonl"))


class SearchLock:
    """An exclusive flock on `path`, held until `release()` or the process ends (a killed master
    releases it too). The file names the holder (host, pid, since) for the message a second master
    prints. flock is coherent across nodes on NFS and on Lustre mounted with `-o flock`; on Lustre
    mounted `localflock` it only excludes masters on the same node, and with `noflock` the lock cannot
    be taken at all: the search then warns and goes on unguarded."""

    def __init__(self, path):
        self.path = Path(path)
        self._fd = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown holder"
                os.close(fd)
                raise SearchLocked(
                    f"another search master is running on {self.path.parent} ({holder}); two masters would "
                    f"append to one journal. Wait for it to end or stop it, then rerun") from None
            os.close(fd)
            log.warning("%s: cannot take a lock on this filesystem (%s; Lustre mounted without -o flock?): "
                        "a second master on the same directory would not be detected", self.path, err)
            return
        holder = {"host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        write_all(fd, json.dumps(holder).encode() + b"\n")
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None
