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

import numba
import numpy as np
import pandas as pd

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
    codes = pd.factorize(np.asarray(keys, np.int64))[0].astype(np.int64)  # dense 0..distinct-1
    n = len(codes)
    admit = np.ones(n, np.bool_) if admit is None else np.ascontiguousarray(admit, np.bool_)
    hits = _replay_loop(codes, np.ascontiguousarray(sizes, np.int64), np.ascontiguousarray(priority, np.int64),
                        admit, int(capacity), bool(bypass), int(codes.max()) + 1 if n else 0)
    return hits.view(np.bool_)


@numba.njit(cache=True, nogil=True)
def _before(hp, hk, a, b):
    """Heap order: lower priority first, ties by key."""
    return hp[a] < hp[b] or (hp[a] == hp[b] and hk[a] < hk[b])


@numba.njit(cache=True, nogil=True)
def _swap(hp, hk, a, b):
    hp[a], hp[b] = hp[b], hp[a]
    hk[a], hk[b] = hk[b], hk[a]


@numba.njit(cache=True, nogil=True)
def _sift_down(hp, hk, size, i):
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and _before(hp, hk, child + 1, child):
            child += 1
        if not _before(hp, hk, child, i):
            return
        _swap(hp, hk, i, child)
        i = child


@numba.njit(cache=True, nogil=True)
def _push(hp, hk, size, p, k):
    i = size
    hp[i], hk[i] = p, k
    while i > 0:
        parent = (i - 1) // 2
        if not _before(hp, hk, i, parent):
            break
        _swap(hp, hk, i, parent)
        i = parent
    return size + 1


@numba.njit(cache=True, nogil=True)
def _replay_loop(keys, sizes, priority, admit, capacity, bypass, distinct):
    """The eviction loop, compiled: a lazy binary heap of (priority, key) over the cached keys. A hit that
    raises a key's priority (LRU, LFU, popularity, tier) pushes nothing; the stale entry is moved up when
    it reaches the top. A hit that lowers it (Belady: the next read moved farther away) pushes a new one,
    and the heap is rebuilt from the cached keys when stale entries outnumber them."""
    n = len(keys)
    hits = np.zeros(n, np.uint8)
    cached = np.zeros(distinct, np.bool_)
    current = np.zeros(distinct, np.int64)  # priority of each cached key
    held = np.zeros(distinct, np.int64)  # bytes of each cached key
    slot = np.zeros(distinct, np.int64)  # position in members, the dense set of cached keys
    members = np.zeros(distinct, np.int64)
    count = 0
    bound = 5 * distinct + 128  # live entries plus at most 4 * distinct + 64 stale ones (see the rebuild)
    hp = np.empty(bound + 1, np.int64)
    hk = np.empty(bound + 1, np.int64)
    heap = 0
    evk = np.empty(distinct, np.int64)  # taken out for an incoming key that may still be bypassed
    evp = np.empty(distinct, np.int64)
    used = 0
    for i in range(n):
        key, size, prio = keys[i], sizes[i], priority[i]
        if cached[key]:
            hits[i] = 1
            old = current[key]
            current[key] = prio
            if prio < old:
                heap = _push(hp, hk, heap, prio, key)
                if heap > 4 * count + 64:
                    for j in range(count):
                        hp[j], hk[j] = current[members[j]], members[j]
                    heap = count
                    for j in range(heap // 2 - 1, -1, -1):
                        _sift_down(hp, hk, heap, j)
            continue
        if not admit[i] or size > capacity:
            continue
        taken = 0
        while used + size > capacity:
            p, k = hp[0], hk[0]
            heap -= 1
            hp[0], hk[0] = hp[heap], hk[heap]
            _sift_down(hp, hk, heap, 0)
            if not cached[k] or current[k] != p:
                if cached[k] and current[k] > p:
                    heap = _push(hp, hk, heap, current[k], k)
                continue
            if bypass and p >= prio:
                heap = _push(hp, hk, heap, p, k)
                break
            evk[taken], evp[taken] = k, p
            taken += 1
            cached[k] = False
            used -= held[k]
            last = members[count - 1]
            members[slot[k]] = last
            slot[last] = slot[k]
            count -= 1
        if used + size > capacity:  # bypassed: put back what was taken out for it
            for j in range(taken):
                k = evk[j]
                cached[k] = True
                current[k] = evp[j]
                used += held[k]
                members[count] = k
                slot[k] = count
                count += 1
                heap = _push(hp, hk, heap, evp[j], k)
            continue
        cached[key] = True
        current[key] = prio
        held[key] = size
        used += size
        members[count] = key
        slot[key] = count
        count += 1
        heap = _push(hp, hk, heap, prio, key)
    return hits


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
