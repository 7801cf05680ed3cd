"""Offline replay of a tensor read stream through a cache of a given capacity in bytes (RQ5, item 1).

Every policy is one eviction order: each read gives its tensor a priority and the cache evicts the lowest
priority first, so one engine (`replay`) serves them all and the policies differ only in the per-read
priorities (`priorities`), computed vectorized before the loop:

  lru         priority = time of the read;
  lfu         priority = (reads of the tensor so far by this cache, time): "perfect" LFU, whose counts
              survive an eviction, ties to the least recently used;
  popularity  the study's rule (Section V-D): a tensor is admitted only while it has >= k donations among
              the last W candidates, and a cached tensor that was no longer popular at its last read is
              evicted before the popular ones (LRU within each class);
  tier        the study's three popularity tiers (RQ3): tier 3 is never admitted, tier 2 is evicted before
              tier 1 (LRU within a tier), and a tier-2 tensor never evicts a tier-1 one (it bypasses);
  opt         Belady's MIN with bypass: evict the tensor whose next read lies farthest in the future, the
              incoming one included (a tensor read never again is not admitted).

OPT variant. With unit-size tensors Belady's MIN is the offline optimum of the hit count. With tensors of
different sizes the optimum is NP-hard (Berger et al., SIGMETRICS'18); we keep the same farthest-next-use
order and evict in that order until the incoming tensor fits, bypassing it when it would have to evict a
tensor read sooner. That is exact for unit sizes and a strong offline reference otherwise (tensors of
one position have nearly equal sizes), but not a proven upper bound for variable sizes.

A tensor larger than the capacity is never admitted and evicts nothing."""

from __future__ import annotations

import heapq

import numpy as np

POLICIES = ("lru", "lfu", "popularity", "tier", "opt")
BYPASS = {"popularity", "tier", "opt"}  # an incoming tensor may only evict tensors of lower priority


def next_use(keys: np.ndarray) -> np.ndarray:
    """Index of the next read of the same key, or len(keys) + (len(keys) - i) when never read again (so
    that those are the farthest, the earliest of them first)."""
    n = len(keys)
    out = 2 * n - np.arange(n, dtype=np.int64)
    if n:
        order = np.argsort(keys, kind="stable")
        same = keys[order[1:]] == keys[order[:-1]]
        out[order[:-1][same]] = order[1:][same]
    return out


def reads_so_far(keys: np.ndarray) -> np.ndarray:
    """1 for the first read of a key, 2 for its second, ... (in sequence order)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    out = np.empty(n, np.int64)
    out[order] = rank + 1
    return out


def priorities(policy: str, keys: np.ndarray, grade: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(priority, admit) of each read for `policy`. `grade` is the class of the read's tensor at that
    moment, higher = keep longer, 0 = never admit: 0/1 (popular) for "popularity", 3 - tier for "tier"."""
    n = len(keys)
    time = np.arange(n, dtype=np.int64)
    admit = np.ones(n, bool)
    if policy == "lru":
        return time, admit
    if policy == "lfu":
        return reads_so_far(keys) * n + time, admit
    if policy == "opt":
        return -next_use(keys), admit
    if policy in ("popularity", "tier"):
        if grade is None:
            raise ValueError(f"cache policy {policy!r} needs the popularity grade of each read")
        grade = np.asarray(grade, np.int64)
        return grade * n + time, grade > 0
    raise ValueError(f"unknown cache policy {policy!r}; choose from {', '.join(POLICIES)}")


def replay(keys, sizes, priority, capacity: int, admit=None, bypass: bool = False) -> np.ndarray:
    """Hit mask of a read stream through a cache of `capacity` bytes that evicts the lowest priority
    first (each read sets its tensor's priority). `admit[i]` False: read i is not cached on a miss.
    `bypass`: an incoming tensor may evict only tensors of lower priority than its own, else it is not
    admitted (and the cache is left as it was). keys: int tensor codes; sizes: bytes of each read."""
    if _fits_whole(keys, sizes, capacity):
        return _seen_admitted(np.asarray(keys, np.int64), admit)
    keys = np.asarray(keys, np.int64).tolist()
    sizes = np.asarray(sizes, np.int64).tolist()
    priority = np.asarray(priority, np.int64).tolist()
    admit = [True] * len(keys) if admit is None else np.asarray(admit, bool).tolist()
    capacity = int(capacity)
    # Lazy heap: each cached key has a heap entry at or below its current priority. A hit that raises the
    # priority (LRU, LFU, popularity, tier) pushes nothing; the entry is moved up when it reaches the top.
    current: dict[int, int] = {}  # cached key -> its priority
    held: dict[int, int] = {}  # cached key -> bytes
    heap: list[tuple[int, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    used = 0
    hits = bytearray(len(keys))
    for i, (key, size, prio, ok) in enumerate(zip(keys, sizes, priority, admit)):
        old = current.get(key)
        if old is not None:
            hits[i] = 1
            current[key] = prio
            if prio < old:  # Belady: the next read moved farther away
                push(heap, (prio, key))
                if len(heap) > 4 * len(current) + 64:  # drop the stale entries now and then
                    heap = [(p, k) for k, p in current.items()]
                    heapq.heapify(heap)
            continue
        if not ok or size > capacity:
            continue
        evicted = []
        while used + size > capacity:
            p, k = pop(heap)
            now = current.get(k)
            if now != p:
                if now is not None and now > p:
                    push(heap, (now, k))
                continue
            if bypass and p >= prio:
                push(heap, (p, k))
                break
            evicted.append((p, k, held.pop(k)))
            del current[k]
            used -= evicted[-1][2]
        if used + size > capacity:  # bypassed: put back what was taken out for it
            for p, k, b in evicted:
                current[k], held[k] = p, b
                used += b
                push(heap, (p, k))
            continue
        current[key] = prio
        held[key] = size
        used += size
        push(heap, (prio, key))
    return np.frombuffer(bytes(hits), dtype=np.uint8).astype(bool)


def _fits_whole(keys, sizes, capacity: int) -> bool:
    """Every tensor of the stream fits at once: nothing is ever evicted."""
    keys = np.asarray(keys, np.int64)
    if len(keys) == 0:
        return True
    _, first = np.unique(keys, return_index=True)
    return int(np.asarray(sizes, np.int64)[first].sum()) <= capacity


def _seen_admitted(keys: np.ndarray, admit) -> np.ndarray:
    """Hits of a cache that never evicts: an earlier read of the same tensor was admitted."""
    n = len(keys)
    admitted = np.ones(n, bool) if admit is None else np.asarray(admit, bool)
    order = np.argsort(keys, kind="stable")
    sk, sa = keys[order], admitted[order].astype(np.int64)
    start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1] if n else np.zeros(0, np.int64)
    before = np.cumsum(sa) - sa  # admitted reads before this one, over the whole sorted array
    base = np.repeat(before[start], np.diff(np.r_[start, n]))
    out = np.empty(n, bool)
    out[order] = before - base > 0
    return out
