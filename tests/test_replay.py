"""Cache-policy replay (RQ5): hand-made read sequences with known answers, the optimum against an
exhaustive search, LRU against the worker's real TensorCache, and the per-run table on a hand-made trace."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from evotrace.analysis import rq5
from evotrace.analysis.replay import BYPASS, POLICIES, next_use, priorities, reads_so_far, replay
from evotrace.cache import TensorCache


def run_policy(policy, keys, capacity, sizes=None, grade=None):
    keys = np.asarray(keys, np.int64)
    sizes = np.ones(len(keys), np.int64) if sizes is None else np.asarray(sizes, np.int64)
    prio, admit = priorities(policy, keys, grade)
    return replay(keys, sizes, prio, capacity, admit, bypass=policy in BYPASS)


def codes(text):
    return [ord(ch) - ord("A") for ch in text]


def optimum_hits(keys, sizes, capacity):
    """Exhaustive search over every admission and eviction choice: the most hits any cache can get."""
    best = {frozenset(): 0}
    for key in keys:
        nxt: dict[frozenset, int] = {}

        def offer(state, hits):
            if nxt.get(state, -1) < hits:
                nxt[state] = hits

        for state, hits in best.items():
            if key in state:
                offer(state, hits + 1)
                continue
            offer(state, hits)  # bypass
            if sizes[key] > capacity:
                continue
            members = sorted(state)
            for r in range(len(members) + 1):
                for victims in itertools.combinations(members, r):
                    kept = state.difference(victims)
                    if sum(sizes[k] for k in kept) + sizes[key] <= capacity:
                        offer(kept | {key}, hits)
        best = nxt
    return max(best.values())


def test_helpers_on_a_hand_made_sequence():
    keys = np.array(codes("ABACBA"))
    assert next_use(keys).tolist() == [2, 4, 5, 12 - 3, 12 - 4, 12 - 5]
    assert reads_so_far(keys).tolist() == [1, 1, 2, 1, 2, 3]


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("lru", [0, 1, 0, 0, 0]),  # A A B C A at capacity 2: C evicts A
        ("lfu", [0, 1, 0, 0, 1]),  # C evicts B, read once, not A, read twice
        ("opt", [0, 1, 0, 0, 1]),  # C is never read again: bypassed
    ],
)
def test_policies_on_a_hand_made_sequence(policy, expected):
    assert run_policy(policy, codes("AABCA"), 2).astype(int).tolist() == expected


def test_opt_bypasses_the_farthest_and_evicts_the_never_read_again():
    # A B C A B D A at capacity 2: C bypassed, then B (never read again) makes room for D
    assert run_policy("opt", codes("ABCABDA"), 2).astype(int).tolist() == [0, 0, 0, 1, 1, 0, 1]
    assert run_policy("lru", codes("ABCABDA"), 2).sum() == 0


def test_variable_sizes_and_oversized_tensors():
    sizes = {0: 6, 1: 5, 2: 11}  # A 6 bytes, B 5, C 11 > capacity 10: never admitted, evicts nothing
    keys = codes("ABACA")
    hit = run_policy("lru", keys, 10, sizes=[sizes[k] for k in keys])
    # A in; B does not fit beside A: A out; A: B out; C too large; A hit
    assert hit.astype(int).tolist() == [0, 0, 0, 0, 1]


def test_popularity_admits_only_popular_and_evicts_the_no_longer_popular_first():
    keys = codes("ABCDAB")
    grade = [1, 0, 1, 1, 0, 1]  # B unpopular at first; A no longer popular at its second read
    # A in, B refused, C in (cap 2: [A, C]), D evicts A (lowest priority = LRU, both popular)
    hit = run_policy("popularity", keys, 2, grade=grade)
    assert hit.astype(int).tolist() == [0, 0, 0, 0, 0, 0]
    keys, grade = codes("ABACA"), [1, 1, 0, 1, 1]
    # A in, B in, A hit but no longer popular: evicted before B when C (popular) arrives: A misses
    hit = run_policy("popularity", keys, 2, grade=grade)
    assert hit.astype(int).tolist() == [0, 0, 1, 0, 0]


def test_tier_rule_never_admits_tier3_and_tier2_never_evicts_tier1():
    tier = {"A": 1, "B": 1, "C": 2, "D": 3}
    keys = codes("ABCDAB")
    grade = [3 - tier[ch] for ch in "ABCDAB"]
    hit = run_policy("tier", keys, 2, grade=grade)
    assert hit.astype(int).tolist() == [0, 0, 0, 0, 1, 1]  # C (tier 2) bypassed, D (tier 3) refused
    keys, grade = codes("CACB"), [1, 2, 1, 2]  # C tier 2, A and B tier 1, capacity 2
    assert run_policy("tier", keys, 2, grade=grade).astype(int).tolist() == [0, 0, 1, 0]
    assert run_policy("tier", codes("CACBC"), 2, grade=[1, 2, 1, 2, 1]).astype(int).tolist() == [0, 0, 1, 0, 0]


def test_no_eviction_shortcut_matches_the_loop():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 6, 40)
    sizes = rng.integers(1, 5, 6)[keys]
    admit = rng.random(40) < 0.6
    footprint = int(sum(sizes[np.unique(keys, return_index=True)[1]]))
    whole = replay(keys, sizes, np.arange(40), footprint, admit)
    assert whole.tolist() == [bool(admit[:i][keys[:i] == keys[i]].any()) for i in range(40)]


@pytest.mark.parametrize("seed", range(25))
def test_opt_is_the_optimum_with_unit_sizes(seed):
    rng = np.random.default_rng(seed)
    n, distinct = int(rng.integers(6, 13)), int(rng.integers(2, 6))
    keys = rng.integers(0, distinct, n)
    unit = {k: 1 for k in range(distinct)}
    grade = rng.integers(0, 3, n)
    for capacity in range(1, distinct + 1):
        opt = int(run_policy("opt", keys, capacity).sum())
        assert opt == optimum_hits(keys.tolist(), unit, capacity)
        for policy in POLICIES:
            g = grade if policy == "tier" else (grade > 0).astype(int) if policy == "popularity" else None
            assert opt >= int(run_policy(policy, keys, capacity, grade=g).sum()), (policy, capacity)


@pytest.mark.parametrize("seed", range(10))
def test_opt_with_variable_sizes_never_beats_the_exhaustive_optimum(seed):
    rng = np.random.default_rng(100 + seed)
    keys = rng.integers(0, 5, 10)
    size_of = {k: int(rng.integers(1, 5)) for k in range(5)}
    sizes = [size_of[k] for k in keys]
    for capacity in (2, 4, 6, 9):
        assert int(run_policy("opt", keys, capacity, sizes=sizes).sum()) <= optimum_hits(keys.tolist(), size_of, capacity)


def real_lru_hits(keys, sizes, capacity, directory):
    """Hits of the worker's TensorCache with policy "lru" on the same reads (get, and put on a miss)."""
    cache = TensorCache(directory, capacity, policy="lru", verify=False)
    out = []
    for key, size in zip(keys, sizes):
        entry = {"tensor_id": f"t{key}", "nbytes": int(size), "hash": f"h{key}"}
        hit = cache.get(entry) is not None
        if not hit:
            cache.put(entry, torch.zeros(1))
        out.append(hit)
    return out


@pytest.mark.parametrize("seed", range(2))
def test_lru_equals_the_real_worker_cache(tmp_path, seed):
    rng = np.random.default_rng(seed)
    keys = rng.zipf(1.5, 150) % 25
    size_of = rng.integers(1, 40, 25)
    sizes = size_of[keys]
    for capacity in (30, 100, 250):
        expected = real_lru_hits(keys, sizes, capacity, tmp_path / f"c{capacity}")
        assert run_policy("lru", keys, capacity, sizes=sizes).tolist() == expected


def reference_replay(keys, sizes, priority, capacity, admit, bypass):
    """The eviction order spelled out with a dict, sorted on every miss: evict the lowest (priority, key)
    until the tensor fits, or (bypass) refuse it when that would evict a priority >= its own."""
    current, held, used, hits = {}, {}, 0, []
    for key, size, prio, ok in zip(keys, sizes, priority, admit):
        if key in current:
            hits.append(True)
            current[key] = prio
            continue
        hits.append(False)
        if not ok or size > capacity:
            continue
        order = sorted((p, k) for k, p in current.items())
        victims, freed = [], 0
        for p, k in order:
            if used - freed + size <= capacity:
                break
            if bypass and p >= prio:
                break
            victims.append(k)
            freed += held[k]
        if used - freed + size > capacity:
            continue
        for k in victims:
            del current[k]
            used -= held.pop(k)
        current[key], held[key] = prio, size
        used += size
    return hits


@pytest.mark.parametrize("seed", range(12))
def test_compiled_loop_equals_the_reference_on_random_streams(seed):
    rng = np.random.default_rng(1000 + seed)
    n, distinct = int(rng.integers(50, 400)), int(rng.integers(3, 40))
    keys = rng.zipf(1.3, n) % distinct
    size_of = rng.integers(1, 20, distinct)
    sizes = size_of[keys]
    grade = rng.integers(0, 3, n)
    footprint = int(size_of[np.unique(keys)].sum())
    for policy in POLICIES:
        g = grade if policy == "tier" else (grade > 0).astype(int) if policy == "popularity" else None
        prio, admit = priorities(policy, keys, g)
        for capacity in (1, 7, footprint // 5, footprint // 2, footprint - 1):
            got = replay(keys, sizes, prio, capacity, admit, bypass=policy in BYPASS)
            want = reference_replay(keys.tolist(), sizes.tolist(), prio.tolist(), capacity, admit.tolist(),
                                    policy in BYPASS)
            assert got.tolist() == want, (policy, capacity)


def test_unknown_policy_and_missing_grade_are_named():
    with pytest.raises(ValueError, match="unknown cache policy 'fifo'"):
        priorities("fifo", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="'tier' needs the popularity grade"):
        priorities("tier", np.zeros(3, np.int64))


# --- the per-run table ---------------------------------------------------------------------------

ANALYSIS = {"popularity_threshold": 2, "tiers": {"tier1_fraction": 0.5, "tier3_max": 1},
            "cache_replay": {"capacities": [0.25, 1.0], "node_workers": 2}}
PARAMS = {"analysis": ANALYSIS, "runs": {"r": {"population": 3, "sample": 2}}}


def trace(rows):
    """rows: (job_id, worker, submit, start, end, tensors); every tensor is 10 bytes."""
    cands = pd.DataFrame([(j, w, s, t, e) for j, w, s, t, e, _ in rows],
                         columns=["job_id", "worker", "submit_time", "start_time", "end_time"]).assign(run="r", status="ok")
    reads = pd.DataFrame([(j, w, t, x) for j, w, _, t, _, xs in rows for x in xs],
                         columns=["job_id", "worker", "start_time", "tensor_id"]).assign(
        run="r", owner_id=0, position=0, nbytes=10, cache_hit=False)
    return cands, reads


def test_donation_counts_see_the_last_p_completed_candidates_at_submission():
    cands, reads = trace([
        (0, 1, 0.0, 0.1, 1.0, ["A"]),
        (1, 2, 0.0, 0.1, 2.0, ["A", "B"]),
        (2, 1, 1.5, 1.6, 3.0, ["A"]),  # submitted after job 0 completed: A donated once
        (3, 2, 3.5, 3.6, 5.0, ["A", "B"]),  # after jobs 0, 1, 2: A three times, B once
        (4, 1, 4.0, 4.1, 6.0, []),
        (5, 1, 6.5, 6.6, 7.0, ["A"]),  # last 3 completed: jobs 2, 3, 4 -> A twice
    ])
    counts = rq5.donation_counts(cands, reads, 3)
    assert counts.tolist() == [0, 0, 0, 1, 3, 1, 2]


# (job_id, worker, submit, start, end, tensors read): worker 1 reads A B A C A B, worker 2 reads A B
TWO_WORKERS = [
    (0, 1, 0.0, 0.0, 1.0, ["A", "B"]),
    (1, 2, 0.0, 0.0, 1.5, ["A"]),
    (2, 1, 1.0, 1.0, 2.0, ["A", "C"]),
    (3, 2, 1.5, 1.5, 2.5, ["B"]),
    (4, 1, 2.0, 2.0, 3.0, ["A", "B"]),
]


def test_cache_replay_table_on_a_hand_made_trace():
    cands, reads = trace(TWO_WORKERS)
    table = rq5.cache_replay(cands, reads, PARAMS)
    assert list(table.columns) == rq5.COLUMNS
    assert len(table) == 2 * len(POLICIES) * 2
    t = table.set_index(["scope", "policy", "capacity_fraction"])
    # worker 1 reads A B A C A B (60 bytes, capacity 15 = one tensor); worker 2 reads A B (20 bytes, 5: none)
    lru = t.loc[("worker", "lru", 0.25)]
    assert (lru["reads"], lru["hits"], lru["caches"], lru["capacity_bytes"]) == (8, 0, 2, 20)
    opt = t.loc[("worker", "opt", 0.25)]
    assert opt["hits"] == 2  # A kept through B and C: two of its three re-reads hit
    assert opt["bytes_fetched"] == 80 - 20 and opt["byte_hit_ratio"] == pytest.approx(20 / 80)
    full = t.xs(1.0, level="capacity_fraction")
    # every read but the first of each tensor: worker 1 reads 3 tensors, worker 2 two, the node 3
    assert full.loc[("worker", "lru"), "hits"] == 8 - 5 and full.loc[("node", "lru"), "hits"] == 8 - 3
    opt_hits = table[table["policy"] == "opt"].set_index(["scope", "capacity_fraction"])["hits"]
    assert (table["hits"].to_numpy() <= opt_hits.loc[list(zip(table["scope"], table["capacity_fraction"]))].to_numpy()).all()
    gap = rq5.policy_gap(table.assign(run="r"))
    assert gap.set_index(["scope", "policy"]).loc[("worker", "opt"), "share_of_opt_hits"] == 1.0


def test_figure_draws_the_optimum_on_top_and_the_finding_quotes_the_table(tmp_path, via_csv):
    from evotrace.figures import rq5 as fig5

    cands, reads = trace(TWO_WORKERS)
    analysis = dict(ANALYSIS, cache_replay={"capacities": [0.25, 0.5, 1.0], "node_workers": 2})
    params = dict(PARAMS, analysis=analysis)
    tables = via_csv({"cache_replay": rq5.cache_replay(cands, reads, params)}, tmp_path)
    fig = fig5.cache_replay(tables, params)
    names = [t.name for t in fig.data]
    assert len(fig.data) == 2 * len(POLICIES)  # one line per policy in the worker and the node panel
    assert names[len(POLICIES) - 1] == fig5.LABELS["opt"] and fig.data[len(POLICIES) - 1].line.color == "black"
    opt = tables["cache_replay"].query("scope == 'worker' and policy == 'opt'").sort_values("capacity_fraction")
    assert list(fig.data[len(POLICIES) - 1].y) == opt["hit_ratio"].tolist()
    sentence = fig5.cache_replay_finding(tables, params)
    at = tables["cache_replay"].query("capacity_fraction == 0.25 and scope == 'worker'").set_index("policy")["hit_ratio"]
    assert sentence.startswith("In run r, with caches of 25 % of the bytes a worker reads")
    assert f"Belady's optimum serves {fig5._percent(at['opt'])}" in sentence
    lru = fig5._percent(at["lru"])  # quoted once: as the best online policy, or beside it
    assert sentence.count(f"LRU {lru}") + sentence.count(f"(LRU) {lru}") == 1
    assert fig5._percent(0.25) == "25 %" and fig5._percent(0.0) == "0.0 %"
    assert fig5.cache_replay_finding({"cache_replay": tables["cache_replay"].iloc[:0]}, params).startswith("No tensor")
