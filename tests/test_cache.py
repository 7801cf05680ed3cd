"""Worker-local tensor cache: LRU order, popularity admission, capacity, corrupt copies."""

from __future__ import annotations

import random
from collections import Counter, deque

import pytest
import torch

from evotrace.cache import PopularityWindow, TensorCache
from evotrace.repository import tensor_hash


def _entry(tid: str, value: float, n: int = 25):
    t = torch.full((n,), value)
    return {"tensor_id": tid, "nbytes": t.numel() * 4, "hash": tensor_hash(t)}, t


def test_lru_order_capacity_and_eviction(tmp_path):
    cache = TensorCache(tmp_path, capacity_bytes=300, policy="lru")  # three 100-byte tensors
    items = {tid: _entry(tid, i) for i, tid in enumerate("abcd")}
    for tid in "abc":
        assert cache.put(*items[tid])
    assert cache.ids() == ["a", "b", "c"] and cache.size == 300
    assert torch.equal(cache.get(items["a"][0]), items["a"][1])  # a becomes most recent
    assert cache.put(*items["d"])  # evicts b, the least recently used
    assert cache.ids() == ["c", "a", "d"] and cache.size <= 300
    assert cache.get(items["b"][0]) is None
    s = cache.stats()
    assert (s["hits"], s["misses"], s["evictions"], s["tensors"]) == (1, 1, 1, 3)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    big = _entry("big", 9.0, n=100)
    assert not cache.put(*big)  # larger than the whole cache
    assert cache.size <= cache.capacity


def test_popularity_admission_threshold_and_window(tmp_path):
    cache = TensorCache(tmp_path, capacity_bytes=10_000, policy="popularity", k=3, window=4)
    e, t = _entry("x", 1.0)
    for _ in range(2):
        cache.observe_donation(["x"])
    assert not cache.put(e, t) and "x" not in cache  # 2 donations < k
    cache.observe_donation(["x", "y"])
    assert cache.put(e, t) and "x" in cache  # 3 donations among the last 4 candidates
    for _ in range(3):
        cache.observe_donation([])
    assert cache.count("x") == 1  # only the third donation is still inside the window
    cache.observe_donation([])
    assert cache.count("x") == 0
    y, ty = _entry("y", 2.0)
    assert not cache.put(y, ty)
    cache.set_popularity({"y": 5})  # counts sent by the master override local observations
    assert cache.put(y, ty)


def test_popularity_evicts_unpopular_first_and_never_for_less_popular(tmp_path):
    cache = TensorCache(tmp_path, capacity_bytes=200, policy="popularity", k=2, window=100)
    cache.set_popularity({"a": 5, "b": 2, "c": 9, "d": 3})
    a, b, c, d = (_entry(t, i) for i, t in enumerate("abcd"))
    assert cache.put(*a) and cache.put(*b)
    assert cache.put(*c) and cache.ids() == ["a", "c"]  # b, the least popular, went
    assert not cache.put(*d)  # d (3) would have to evict a more popular tensor
    cache.set_popularity({"a": 1, "c": 9, "d": 3})  # a fell below k: first to go
    assert cache.put(*d) and cache.ids() == ["c", "d"] and cache.evictions == 2


def test_none_policy_and_corrupt_copy(tmp_path):
    none = TensorCache(tmp_path / "none", capacity_bytes=1 << 20, policy="none")
    e, t = _entry("a", 1.0)
    assert not none.put(e, t) and none.get(e) is None and none.misses == 1
    cache = TensorCache(tmp_path / "lru", capacity_bytes=1 << 20, policy="lru")
    assert cache.put(e, t)
    (path,) = (tmp_path / "lru").glob("*.safetensors")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01
    path.write_bytes(bytes(blob))
    assert cache.get(e) is None and cache.corrupt == 1 and "a" not in cache and not path.exists()
    with pytest.raises(ValueError):
        TensorCache(tmp_path, 10, policy="fifo")


def test_popularity_window_counts():
    w = PopularityWindow(window=3, k=2)
    for ids in (["a", "b"], ["a"], ["b"], ["c"]):
        w.observe(ids)
    assert w.snapshot() == {"a": 1, "b": 1, "c": 1}
    w.observe(["b", "b"])
    assert w.count("b") == 2 and w.popular() == {"b"}


@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256"])
def test_hit_verified_with_the_entry_algorithm_and_byte_flip_detected(tmp_path, algorithm):
    t = torch.arange(64, dtype=torch.float32)
    digest = tensor_hash(t) if algorithm == "xxh3_128" else tensor_hash(t, "sha256")  # default: xxh3_128
    assert digest.startswith(algorithm + ":")
    e = {"tensor_id": "m/w", "nbytes": 256, "hash": digest}
    cache = TensorCache(tmp_path, capacity_bytes=1 << 20, policy="lru")
    assert cache.put(e, t) and torch.equal(cache.get(e), t) and cache.hits == 1
    (path,) = tmp_path.glob("*.safetensors")
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01  # one bit inside the tensor data (the last 256 bytes)
    path.write_bytes(bytes(blob))
    assert cache.get(e) is None and cache.corrupt == 1 and "m/w" not in cache


def test_cache_writes_are_best_effort_and_leftovers_are_removed(tmp_path, caplog, monkeypatch):
    import shutil

    import evotrace.durable

    monkeypatch.setattr(evotrace.durable, "_WARNED", set())
    (tmp_path / ".tmp-999-abc").write_bytes(b"half written")  # a worker killed while writing
    cache = TensorCache(tmp_path, capacity_bytes=1000, policy="lru")
    assert not (tmp_path / ".tmp-999-abc").exists()
    assert cache.put(*_entry("a", 1.0))
    shutil.rmtree(tmp_path)
    tmp_path.write_bytes(b"")  # the node-local disk is gone: every write fails with an OSError
    assert not cache.put(*_entry("b", 2.0)) and not cache.put(*_entry("c", 3.0))
    assert cache.stats()["write_errors"] == 2 and "b" not in cache and "c" not in cache
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


def test_popularity_window_matches_a_recount_of_the_window():
    """observe keeps counts incrementally; a recount of the last `window` candidates is the reference."""
    for trial in range(200):
        rng = random.Random(trial)
        window, k = rng.randint(1, 12), rng.randint(1, 6)
        w, recent = PopularityWindow(window, k), deque(maxlen=window)
        for _ in range(rng.randint(1, 80)):
            ids = [f"t{rng.randint(0, 15)}" for _ in range(rng.randint(0, 8))]  # repeats count once
            w.observe(ids)
            recent.append(set(ids))
            counts = Counter(t for ids in recent for t in ids)
            assert w.snapshot() == counts
            assert w.popular_counts() == {t: n for t, n in counts.items() if n >= k}
