"""The master's append-only journal: one JSON line when a candidate is created and one when its
result is gathered. It is the only file the search writes while running: a few hundred bytes per
candidate handed to the kernel (no fsync), which survive a SIGKILL of the process and let a restarted
search continue from every completed candidate."""

from __future__ import annotations

import json
import os
from pathlib import Path


class Journal:
    def __init__(self, path):
        self.path = Path(path)
        self._fh = None

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def read(self) -> list[dict]:
        """All complete records; a line cut short by a kill is ignored."""
        records = []
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return records

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._truncate_partial_tail()
        self._fh = open(self.path, "ab", buffering=0)

    def _truncate_partial_tail(self) -> None:
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)

    def append(self, records: list[dict]) -> None:
        if records:
            self._fh.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def retire(self) -> None:
        """Keep the journal of a finished search beside its trace, out of the way of a fresh start."""
        self.close()
        if self.path.exists():
            os.replace(self.path, self.path.with_suffix(".done.jsonl"))
