"""RQ5 (the study's future work): design choices measured. Cache policies replayed over the traced tensor
reads, against Belady's offline optimum, per worker and per node; and the design experiments (analysis.design:
cache policies in situ, scheduling quanta, mutation bias, skip-store, transfer on/off) compared over seeds.

Each worker (or each node of analysis.cache_replay.node_workers workers, as on a Polaris node) has its
own cache, sized as a fraction of the bytes that worker (node) reads in the run; its reads are replayed in
time order (see analysis.replay for the policies). The popularity and tier rules see what the master
ships with each job: every tensor's donations among the last W = p candidates completed before the job
was submitted."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import design
from .common import concat_runs, population_size, tensor_codes
from .replay import BYPASS, POLICIES, priorities, replay
from .rq3 import tier_of

SCOPES = ("worker", "node")
COLUMNS = ["run", "scope", "policy", "capacity_fraction", "caches", "capacity_bytes", "reads", "hits", "hit_ratio",
           "bytes_read", "bytes_fetched", "byte_hit_ratio"]


def donation_counts(candidates: pd.DataFrame, reads: pd.DataFrame, window: int, tensor: np.ndarray | None = None
                    ) -> np.ndarray:
    """For each read of one run: how many of the last `window` candidates completed before the reading
    job was submitted received that tensor (the master's PopularityWindow as shipped with the job). Every
    completed candidate takes a slot, also one that received nothing or failed. `tensor`: tensor_codes."""
    c = candidates.sort_values(["end_time", "job_id"], kind="stable", na_position="last")
    ends = c["end_time"].to_numpy(float)
    submitted = c["submit_time"].fillna(c["start_time"]) if "submit_time" in c else c["start_time"]
    seen_by_slot = np.searchsorted(ends, submitted.to_numpy(float), side="right").astype(np.int64)
    jobs = c["job_id"].to_numpy(np.int64)
    by_job = np.argsort(jobs, kind="stable")
    job = reads["job_id"].to_numpy(np.int64)
    at = np.minimum(np.searchsorted(jobs[by_job], job), max(len(jobs) - 1, 0))
    known = (jobs[by_job][at] == job) if len(jobs) else np.zeros(len(job), bool)
    slot = by_job[at]  # the read's job's rank in completion order (its slot), where the job is known
    tensor = tensor_codes(reads) if tensor is None else tensor
    stride = len(c) + window + 1
    keys = np.sort(tensor[known] * stride + slot[known])
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys  # one per (tensor, candidate)
    seen = np.where(known, seen_by_slot[slot] if len(jobs) else 0, 0)
    upper = tensor * stride + seen
    order = np.argsort(upper, kind="stable")  # sorted queries: searchsorted walks keys in order, both bounds
    out = np.empty(len(upper), np.int64)
    out[order] = (np.searchsorted(keys, upper[order], side="left")
                  - np.searchsorted(keys, (tensor * stride + np.maximum(seen - window, 0))[order], side="left"))
    return out


def grades(policy: str, counts: np.ndarray, k: int, window: int, tiers: dict) -> np.ndarray | None:
    """The class a popularity-aware policy gives each read (higher = keep longer, 0 = never admit)."""
    if policy == "popularity":
        return (counts >= k).astype(np.int64)
    if policy == "tier":
        return 3 - tier_of(counts, np.full(len(counts), window), tiers)
    return None


def cache_of(reads: pd.DataFrame, scope: str, node_workers: int) -> np.ndarray:
    """The cache serving each read: its worker, or its node (workers 1..W in groups of node_workers)."""
    worker = reads["worker"].to_numpy(np.int64)
    return worker if scope == "worker" else (worker - 1) // node_workers


def ordered_reads(reads: pd.DataFrame, tensor: np.ndarray, counts: np.ndarray, scope: str, node_workers: int) -> dict:
    """A run's reads grouped by the cache that serves them, each cache's in time order: integer tensor
    codes (tensor_codes), sizes, donation counts, and the bounds of each cache's slice."""
    sizes = reads["nbytes"].to_numpy(np.int64)
    job = reads["job_id"].to_numpy(np.int64)
    time = reads["start_time"].to_numpy(float, na_value=np.inf)
    cache = cache_of(reads, scope, node_workers)
    order = np.lexsort((tensor, job, time, cache))
    cache = cache[order]
    return {"tensor": tensor[order], "sizes": sizes[order], "donations": counts[order],
            "bounds": np.r_[0, np.flatnonzero(cache[1:] != cache[:-1]) + 1, len(cache)]}


def replay_ordered(o: dict, policy: str, capacity_of, k: int, window: int, tiers: dict) -> tuple[int, int, int]:
    """(hits, bytes fetched, total capacity) of `policy` over every cache of ordered_reads `o`; each
    cache gets capacity_of(bytes its readers read) bytes."""
    hits = fetched = capacity_total = 0
    tensor, sizes, donations, bounds = o["tensor"], o["sizes"], o["donations"], o["bounds"]
    for a, b in zip(bounds[:-1], bounds[1:]):
        capacity = int(capacity_of(int(sizes[a:b].sum())))
        prio, admit = priorities(policy, tensor[a:b], grades(policy, donations[a:b], k, window, tiers))
        hit = replay(tensor[a:b], sizes[a:b], prio, capacity, admit, bypass=policy in BYPASS)
        hits += int(hit.sum())
        fetched += int(sizes[a:b][~hit].sum())
        capacity_total += capacity
    return hits, fetched, capacity_total


def replay_caches(candidates, reads, scope, policy, capacity_of, k, window, tiers, node_workers) -> tuple[int, int]:
    """(hits, bytes fetched) of one policy over one run's reads, one cache per worker or node."""
    tensor = tensor_codes(reads)
    counts = donation_counts(candidates, reads, window, tensor)
    hits, fetched, _ = replay_ordered(ordered_reads(reads, tensor, counts, scope, node_workers), policy, capacity_of,
                                      k, window, tiers)
    return hits, fetched


def replay_run(candidates: pd.DataFrame, reads: pd.DataFrame, p: int, analysis: dict,
               policies=POLICIES, scopes=SCOPES) -> pd.DataFrame:
    """Hit ratio and bytes fetched of each policy x capacity x scope over one run's reads."""
    options = analysis["cache_replay"]
    k, tiers = int(analysis["popularity_threshold"]), analysis["tiers"]
    tensor = tensor_codes(reads)
    counts = donation_counts(candidates, reads, p, tensor)
    bytes_read = int(reads["nbytes"].sum())
    rows = []
    for scope in scopes:
        o = ordered_reads(reads, tensor, counts, scope, int(options["node_workers"]))
        for policy in policies:
            for fraction in options["capacities"]:
                hits, fetched, capacity_total = replay_ordered(
                    o, policy, lambda total: math.ceil(float(fraction) * total), k, p, tiers)
                rows.append({"scope": scope, "policy": policy, "capacity_fraction": float(fraction),
                             "caches": len(o["bounds"]) - 1, "capacity_bytes": capacity_total, "reads": len(reads),
                             "hits": hits, "bytes_read": bytes_read, "bytes_fetched": fetched})
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("run", "hit_ratio", "byte_hit_ratio")])
    out["hit_ratio"] = out["hits"] / out["reads"]
    out["byte_hit_ratio"] = 1.0 - out["bytes_fetched"] / out["bytes_read"]
    return out


def cache_replay(candidates, tensor_reads, params) -> pd.DataFrame:
    """Every run's reads replayed under each policy (analysis.replay.POLICIES) at each capacity
    (analysis.cache_replay.capacities, fractions of the bytes each cache's readers read), per worker and
    per node."""
    parts = []
    for run, reads in tensor_reads.groupby("run", sort=True):
        if reads.empty:
            continue
        part = replay_run(candidates[candidates["run"] == run], reads, population_size(params, run), params["analysis"])
        part.insert(0, "run", run)
        parts.append(part)
    return concat_runs(parts, COLUMNS)


def policy_gap(replayed: pd.DataFrame) -> pd.DataFrame:
    """Per run, scope and policy of a cache_replay table: the mean hit ratio over the capacity sweep, the
    optimum's, and the share of the optimum's hits the policy reaches (hits / OPT hits over all capacities)."""
    cols = ["run", "scope", "policy", "mean_hit_ratio", "opt_mean_hit_ratio", "share_of_opt_hits", "bytes_fetched",
            "opt_bytes_fetched"]
    if replayed.empty:
        return pd.DataFrame(columns=cols)
    keys = ["run", "scope", "policy"]
    g = replayed.groupby(keys, sort=False).agg(mean_hit_ratio=("hit_ratio", "mean"), hits=("hits", "sum"),
                                               bytes_fetched=("bytes_fetched", "sum")).reset_index()
    opt = g[g["policy"] == "opt"].drop(columns="policy").rename(
        columns={"mean_hit_ratio": "opt_mean_hit_ratio", "hits": "opt_hits", "bytes_fetched": "opt_bytes_fetched"})
    out = g.merge(opt, on=["run", "scope"], how="left")
    out["share_of_opt_hits"] = out["hits"] / out["opt_hits"].where(out["opt_hits"] > 0)
    return out[cols]


TABLES = {
    "cache_replay": cache_replay,
    "design_runs": design.design_runs,
    "design_comparisons": design.design_comparisons,
    "design_determinism": design.design_determinism,
}
