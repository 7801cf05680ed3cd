"""Worker-local tensor cache on a node-local path (Polaris /local/scratch), in front of the shared
repository. Section V-B found temporal locality of tensor reads within a worker; Section V-D found that
a tensor donated at least 5 times among the last population-size candidates is likely to be donated
again, which the "popularity" policy uses as its admission and retention rule.

Policies:
  "none"        never caches (counts misses, so runs with and without a cache trace alike);
  "lru"         admits everything that fits, evicts the least recently used;
  "popularity"  admits a tensor only while it has >= k donations among the last W candidates; evicts
                tensors below that threshold first, then the least popular, least recently used.

Each tensor is its own safetensors file named by a digest of its tensor id; a hit is checked against
the manifest hash with the algorithm that hash records (the repository's default, xxh3_128, for new
entries; sha256, blake2b or crc32 for older ones), and a bad copy is dropped and counted as a miss.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import OrderedDict, deque
from itertools import compress, repeat
from operator import add, not_, sub
from pathlib import Path
from typing import Iterable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .durable import TMP_PREFIX, atomic_write, warn_once
from .repository import tensor_hash

log = logging.getLogger("evotrace.cache")

POLICIES = ("none", "lru", "popularity")
SUFFIX = ".tensor.safetensors"


class PopularityWindow:
    """Donation counts of each tensor over the last `window` candidates (one `observe` per candidate,
    with the tensor ids it received from its donor, possibly none).

    The master observes every read of every candidate, tens per candidate once the search converges, and
    most ids enter and leave the window within a few candidates. So `observe` does its per-read work in C
    (map, compress, dict.update) and runs Python code only for ids crossing the threshold k or leaving."""

    def __init__(self, window: int = 100, k: int = 5):
        if window < 1 or k < 1:
            raise ValueError(f"popularity window and k must be >= 1, got window={window}, k={k}")
        self.window, self.k = int(window), int(k)
        self._recent: deque[tuple[str, ...]] = deque()
        self._counts: dict[str, int] = {}
        self._popular: dict[str, int] = {}  # counts >= k, kept up to date by observe

    def observe(self, tensor_ids: Iterable[str]) -> None:
        ids = tuple(dict.fromkeys(tensor_ids))
        self._recent.append(ids)
        counts, popular, at_least_k = self._counts, self._popular, self.k.__le__
        if ids:
            values = list(map(add, map(counts.get, ids, repeat(0)), repeat(1)))
            counts.update(zip(ids, values))
            popular.update(compress(zip(ids, values), map(at_least_k, values)))
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            if old:
                values = list(map(sub, map(counts.__getitem__, old), repeat(1)))
                counts.update(zip(old, values))
                popular.update(compress(zip(old, values), map(at_least_k, values)))
                for cooled in compress(old, map((self.k - 1).__eq__, values)):
                    del popular[cooled]
                for gone in compress(old, map(not_, values)):
                    del counts[gone]

    def count(self, tensor_id: str) -> int:
        return self._counts.get(tensor_id, 0)

    def is_popular(self, tensor_id: str) -> bool:
        return self.count(tensor_id) >= self.k

    def popular(self) -> set[str]:
        return set(self._popular)

    def popular_counts(self) -> dict[str, int]:
        """The counts a worker's cache acts on (those >= k: below k it admits nothing and ranks by
        recency), shipped with each job instead of the whole window."""
        return dict(self._popular)

    def snapshot(self) -> dict[str, int]:
        """Counts to ship with a job to a worker's cache (`TensorCache.set_popularity`)."""
        return dict(self._counts)


class TensorCache:
    def __init__(self, directory, capacity_bytes: int, policy: str, k: int = 5, window: int = 100,
                 verify: bool = True):
        if policy not in POLICIES:
            raise ValueError(f"unknown cache policy {policy!r}; choose from {POLICIES}")
        self.directory = Path(directory)
        self.capacity = int(capacity_bytes)
        self.policy = policy
        self.verify = verify
        self.popularity = PopularityWindow(window, k)
        self._counts_override: Mapping[str, int] | None = None
        self._entries: OrderedDict[str, tuple[Path, int, str]] = OrderedDict()  # tensor_id -> (path, nbytes, hash), LRU first
        self.size = 0
        self.hits = self.misses = self.evictions = self.admissions = self.rejections = self.corrupt = 0
        self.write_errors = 0
        self.bytes_hit = self.bytes_cached = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in (*self.directory.glob(f"*{SUFFIX}"), *self.directory.glob(f"{TMP_PREFIX}*")):
            stale.unlink(missing_ok=True)  # a cache lives as long as its worker process

    def close(self) -> None:
        """Remove the cache's directory: it is node-local scratch of one worker process."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self._entries.clear()
        self.size = 0

    # ---------------------------------------------------------------- popularity
    def observe_donation(self, tensor_ids: Iterable[str]) -> None:
        """One candidate's donated tensor ids (the master knows them; pass them on with each job)."""
        self.popularity.observe(tensor_ids)

    def set_popularity(self, counts: Mapping[str, int]) -> None:
        """Use the master's counts (PopularityWindow.snapshot) instead of locally observed donations."""
        self._counts_override = dict(counts)

    def count(self, tensor_id: str) -> int:
        if self._counts_override is not None:
            return self._counts_override.get(tensor_id, 0)
        return self.popularity.count(tensor_id)

    # ---------------------------------------------------------------- access
    def __contains__(self, tensor_id: str) -> bool:
        return tensor_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> list[str]:
        """Cached tensor ids, least recently used first."""
        return list(self._entries)

    def get(self, entry: Mapping) -> torch.Tensor | None:
        """The tensor of a manifest entry if cached (and intact), else None."""
        tid = entry["tensor_id"]
        found = self._entries.get(tid)
        if found is None or found[2] != entry["hash"]:
            self.misses += 1
            return None
        path, nbytes, expected = found
        try:
            with safe_open(str(path), framework="pt") as fh:
                tensor = fh.get_tensor("t")
            if self.verify and tensor_hash(tensor, expected.split(":", 1)[0]) != expected:
                raise ValueError("hash mismatch")
        except Exception:
            self.corrupt += 1
            self.misses += 1
            self._drop(tid)
            return None
        self._entries.move_to_end(tid)
        self.hits += 1
        self.bytes_hit += nbytes
        return tensor

    def put(self, entry: Mapping, tensor: torch.Tensor) -> bool:
        """Offer a tensor just read from the repository; True if the policy admitted it."""
        tid, nbytes = entry["tensor_id"], int(entry["nbytes"])
        if tid in self._entries:
            self._entries.move_to_end(tid)
            return True
        if self.policy == "none" or nbytes > self.capacity:
            self.rejections += 1
            return False
        if self.policy == "popularity" and self.count(tid) < self.popularity.k:
            self.rejections += 1
            return False
        if not self._make_room(nbytes, self.count(tid)):
            self.rejections += 1
            return False
        path = self.directory / (hashlib.blake2b(tid.encode(), digest_size=16).hexdigest() + SUFFIX)
        try:
            with atomic_write(path) as tmp:
                save_file({"t": tensor.detach().cpu().contiguous()}, str(tmp), metadata={"tensor_id": tid})
        except (OSError, SafetensorError) as err:  # best effort: a full or lost node-local disk costs hits only
            self.write_errors += 1
            self.rejections += 1
            warn_once(log, ("cache", getattr(err, "errno", None) or str(err).split(" at path")[0]), "tensor cache %s: cannot write (%s); tensors are read from the "
                      "repository instead", self.directory, err)
            return False
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._entries[tid] = (path, nbytes, entry["hash"])
        self.size += nbytes
        self.admissions += 1
        self.bytes_cached += nbytes
        return True

    def _make_room(self, nbytes: int, new_count: int) -> bool:
        if self.size + nbytes <= self.capacity:
            return True
        if self.policy == "lru":
            order = list(self._entries)
        else:
            k = self.popularity.k
            rank = {tid: i for i, tid in enumerate(self._entries)}
            keyed = [(self.count(t) >= k, self.count(t), rank[t], t) for t in self._entries]
            keyed.sort()
            order = []
            freed = self.capacity - self.size
            for popular, count, _, tid in keyed:
                if freed >= nbytes:
                    break
                if popular and count > new_count:
                    return False  # would evict a more popular tensor for a less popular one
                order.append(tid)
                freed += self._entries[tid][1]
            if freed < nbytes:
                return False
        for tid in order:
            if self.size + nbytes <= self.capacity:
                break
            self._drop(tid)
            self.evictions += 1
        return self.size + nbytes <= self.capacity

    def _drop(self, tid: str) -> None:
        path, nbytes, _ = self._entries.pop(tid)
        self.size -= nbytes
        path.unlink(missing_ok=True)

    def clear(self) -> None:
        for tid in list(self._entries):
            self._drop(tid)

    def stats(self) -> dict:
        return {
            "policy": self.policy,
            "capacity_bytes": self.capacity,
            "size_bytes": self.size,
            "tensors": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "admissions": self.admissions,
            "rejections": self.rejections,
            "corrupt": self.corrupt,
            "write_errors": self.write_errors,
            "bytes_hit": self.bytes_hit,
            "bytes_cached": self.bytes_cached,
        }
