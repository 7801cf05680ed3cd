"""RQ5 (the study's future work): design choices measured. Cache policies replayed over the traced tensor
reads, against Belady's offline optimum, per worker and per node.

Each worker (or each node of analysis.cache_replay.node_workers workers, as on a Polaris node) has its
own cache, sized as a fraction of the bytes that worker (node) reads in the run; its reads are replayed in
time order (see analysis.replay for the policies). The popularity and tier rules see what the master
ships with each job: every tensor's donations among the last W = p candidates completed before the job
was submitted."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .common import concat_runs, population_size
from .replay import BYPASS, POLICIES, priorities, replay
from .rq3 import tier_of

SCOPES = ("worker", "node")
COLUMNS = ["run", "scope", "policy", "capacity_fraction", "caches", "capacity_bytes", "reads", "hits", "hit_ratio",
           "bytes_read", "bytes_fetched", "byte_hit_ratio"]


def donation_counts(candidates: pd.DataFrame, reads: pd.DataFrame, window: int) -> np.ndarray:
    """For each read of one run: how many of the last `window` candidates completed before the reading
    job was submitted received that tensor (the master's PopularityWindow as shipped with the job). Every
    completed candidate takes a slot, also one that received nothing or failed."""
    c = candidates.sort_values(["end_time", "job_id"], kind="stable", na_position="last")
    slot = pd.Series(np.arange(len(c), dtype=np.int64), index=c["job_id"].to_numpy())
    ends = c["end_time"].to_numpy(float)
    submitted = c["submit_time"].fillna(c["start_time"]) if "submit_time" in c else c["start_time"]
    seen_by_job = pd.Series(np.searchsorted(ends, submitted.to_numpy(float), side="right").astype(np.int64),
                            index=c["job_id"].to_numpy())
    job = reads["job_id"].to_numpy(np.int64)
    tensor = pd.factorize(reads["tensor_id"])[0].astype(np.int64)
    donation = pd.DataFrame({"tensor": tensor, "slot": slot.reindex(job).to_numpy()}).dropna().drop_duplicates()
    stride = len(c) + window + 1
    keys = np.sort(donation["tensor"].to_numpy(np.int64) * stride + donation["slot"].to_numpy(np.int64))
    seen = seen_by_job.reindex(job).fillna(0).to_numpy(np.int64)
    hi = np.searchsorted(keys, tensor * stride + seen, side="left")
    lo = np.searchsorted(keys, tensor * stride + np.maximum(seen - window, 0), side="left")
    return hi - lo


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


def replay_run(candidates: pd.DataFrame, reads: pd.DataFrame, p: int, analysis: dict,
               policies=POLICIES, scopes=SCOPES) -> pd.DataFrame:
    """Hit ratio and bytes fetched of each policy x capacity x scope over one run's reads."""
    options = analysis["cache_replay"]
    k, tiers = int(analysis["popularity_threshold"]), analysis["tiers"]
    counts = donation_counts(candidates, reads, p)
    tensor_all = pd.factorize(reads["tensor_id"])[0].astype(np.int64)
    sizes_all = reads["nbytes"].to_numpy(np.int64)
    job = reads["job_id"].to_numpy(np.int64)
    time = reads["start_time"].to_numpy(float, na_value=np.inf)
    rows = []
    for scope in scopes:
        cache = cache_of(reads, scope, int(options["node_workers"]))
        order = np.lexsort((tensor_all, job, time, cache))
        cache, tensor, sizes, donations = cache[order], tensor_all[order], sizes_all[order], counts[order]
        bounds = np.r_[0, np.flatnonzero(cache[1:] != cache[:-1]) + 1, len(cache)]
        for policy in policies:
            for fraction in options["capacities"]:
                hits = fetched = capacity_total = 0
                for a, b in zip(bounds[:-1], bounds[1:]):
                    capacity = math.ceil(float(fraction) * int(sizes[a:b].sum()))
                    grade = grades(policy, donations[a:b], k, p, tiers)
                    prio, admit = priorities(policy, tensor[a:b], grade)
                    hit = replay(tensor[a:b], sizes[a:b], prio, capacity, admit, bypass=policy in BYPASS)
                    hits += int(hit.sum())
                    fetched += int(sizes[a:b][~hit].sum())
                    capacity_total += capacity
                rows.append({"scope": scope, "policy": policy, "capacity_fraction": float(fraction),
                             "caches": len(bounds) - 1, "capacity_bytes": capacity_total, "reads": len(order),
                             "hits": hits, "bytes_read": int(sizes.sum()), "bytes_fetched": fetched})
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
}
