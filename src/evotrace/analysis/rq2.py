"""RQ2 (Section V-B, Fig. 2): how tensor accesses spread over asynchronous workers.

Transfer learning turns every candidate into a set of tensor reads. Which worker reads which tensor,
and when, tells whether worker-local caching (reuse on one worker) or broadcasting and co-scheduling
(co-access across workers) would pay off; the scheduling-quanta bound prices the co-scheduling."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

FIG2_RANKS = (2, 3, 4)  # the most popular tensor is read everywhere, all the time: Fig. 2 leaves it out
PAIR_BUDGET = 1 << 24  # co-access pairs expanded at once: bounds memory, not the result


def tensor_popularity(tensor_reads: pd.DataFrame) -> pd.DataFrame:
    """Popularity = number of reads; rank 1 is the most read tensor of a run (ties: smaller tensor_id)."""
    counts = tensor_reads.groupby(["run", "tensor_id"], sort=False).size().rename("reads").reset_index()
    counts = counts.sort_values(["run", "reads", "tensor_id"], ascending=[True, False, True], kind="stable")
    counts["rank"] = counts.groupby("run").cumcount() + 1
    return counts.reset_index(drop=True)


def popular_tensor_reads(candidates, tensor_reads, params) -> pd.DataFrame:
    """Fig. 2 points: every read of the 2nd-4th most popular tensors of each run (worker x start time)."""
    cols = ["run", "rank", "tensor_id", "reads", "worker", "job_id", "start_time", "owner_id", "position"]
    top = tensor_popularity(tensor_reads)
    top = top[top["rank"].isin(FIG2_RANKS)]
    keep = [c for c in cols if c in tensor_reads.columns and c not in ("rank", "reads")]
    points = tensor_reads[keep].merge(top, on=["run", "tensor_id"])
    return points[[c for c in cols if c in points.columns]].sort_values(
        ["run", "rank", "start_time", "worker"], kind="stable"
    ).reset_index(drop=True)


def _reuse_flags(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per (candidate, tensor) read with `reused`: the same worker reads the tensor again within
    its next k candidates. A worker's candidates are ordered by start time; every candidate counts as a
    slot, also those that read nothing (a worker-local cache would have to hold the tensor through them)."""
    slots = candidates[["run", "worker", "job_id", "start_time"]].sort_values(
        ["run", "worker", "start_time", "job_id"], kind="stable"
    )
    slots = slots.assign(slot=slots.groupby(["run", "worker"], sort=False).cumcount())
    reads = tensor_reads[["run", "job_id", "worker", "tensor_id"]].drop_duplicates(["run", "job_id", "tensor_id"])
    reads = reads.merge(slots[["run", "job_id", "slot"]], on=["run", "job_id"], how="inner")
    run = pd.factorize(reads["run"])[0]
    tensor = pd.factorize(reads["tensor_id"])[0]
    worker = reads["worker"].to_numpy(np.int64)
    slot = reads["slot"].to_numpy(np.int64)
    order = np.lexsort((slot, tensor, worker, run))
    run, tensor, worker, slot = run[order], tensor[order], worker[order], slot[order]
    same = np.zeros(len(order), bool)
    same[:-1] = (run[1:] == run[:-1]) & (worker[1:] == worker[:-1]) & (tensor[1:] == tensor[:-1])
    gap = np.full(len(order), np.iinfo(np.int64).max)
    gap[:-1] = np.where(same[:-1], slot[1:] - slot[:-1], gap[:-1])
    out = reads.iloc[order][["run", "worker", "job_id", "tensor_id"]].reset_index(drop=True)
    out["reused"] = gap <= k
    return out


def worker_reuse(candidates, tensor_reads, params) -> pd.DataFrame:
    """Per-worker temporal locality: the fraction of a worker's reads that it repeats within its next
    k = analysis.reuse_k candidates, i.e. the hit rate of an ideal worker-local cache holding k candidates."""
    k = int(params["analysis"]["reuse_k"])
    flags = _reuse_flags(candidates, tensor_reads, k)
    out = flags.groupby(["run", "worker"], sort=True).agg(reads=("reused", "size"), reused=("reused", "sum"))
    out = out.reset_index()
    out["reused"] = out["reused"].astype(np.int64)
    out["reuse_fraction"] = out["reused"] / out["reads"]
    out["k"] = k
    return out


def _coaccess_counts(tensor_reads: pd.DataFrame, dt: float) -> pd.DataFrame:
    """For every read, the number of other workers that read the same tensor within |t' - t| <= dt.

    Reads are sorted by (tensor, time); a window [lo, hi) holds the reads within dt. The number of
    distinct workers in it is the number of window reads whose previous read of the same (tensor, worker)
    lies before lo; the reader's own worker is always one of them. Work grows with the reads that fall
    within dt of each other, not with the square of the trace."""
    r = tensor_reads[tensor_reads["start_time"].notna()]
    cols = ["run", "job_id", "worker", "tensor_id", "start_time"]
    if r.empty:
        return pd.DataFrame({c: r[c] for c in cols}).assign(other_workers=np.zeros(0, np.int64))
    group = r.groupby(["run", "tensor_id"], sort=False).ngroup().to_numpy(np.int64)
    t = r["start_time"].to_numpy(float)
    worker = pd.factorize(r["worker"])[0].astype(np.int64)
    order = np.lexsort((t, group))
    group, t, worker = group[order], t[order], worker[order]
    stride = np.ceil(t.max() - t.min() + 2 * dt + 1)
    key = group * stride + (t - t.min())
    lo = np.searchsorted(key, key - dt, side="left")
    hi = np.searchsorted(key, key + dt, side="right")

    n = len(key)
    by_worker = np.lexsort((np.arange(n), worker, group))
    prev = np.full(n, -1, np.int64)
    same = (group[by_worker][1:] == group[by_worker][:-1]) & (worker[by_worker][1:] == worker[by_worker][:-1])
    prev[by_worker[1:][same]] = by_worker[:-1][same]

    lens = hi - lo
    cum = np.cumsum(lens)
    cuts = np.unique(np.searchsorted(cum, np.arange(PAIR_BUDGET, cum[-1], PAIR_BUDGET), side="left") + 1)
    distinct = np.empty(n, np.int64)
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, n]):
        if a >= b:
            continue
        length = lens[a:b]
        owner = np.repeat(np.arange(b - a), length)
        start = np.repeat(np.cumsum(length) - length, length)
        j = np.arange(length.sum()) - start + np.repeat(lo[a:b], length)
        first = prev[j] < lo[a:b][owner]
        distinct[a:b] = np.bincount(owner, weights=first, minlength=b - a).astype(np.int64)
    out = r.iloc[order][cols].reset_index(drop=True)
    out["other_workers"] = distinct - 1
    return out


def coaccess(candidates, tensor_reads, params) -> pd.DataFrame:
    """Distribution of cross-worker co-access per run: how many reads had 0, 1, 2 ... other workers
    reading the same tensor within dt = analysis.coaccess_dt seconds (broadcast opportunities)."""
    dt = float(params["analysis"]["coaccess_dt"])
    counts = _coaccess_counts(tensor_reads, dt)
    out = counts.groupby(["run", "other_workers"], sort=True).size().rename("reads").reset_index()
    out["fraction"] = out["reads"] / out.groupby("run")["reads"].transform("sum")
    out["dt"] = dt
    return out


def locality(candidates, tensor_reads, params) -> pd.DataFrame:
    """One line per run: worker-local reuse and cross-worker co-access summarized side by side."""
    k = int(params["analysis"]["reuse_k"])
    dt = float(params["analysis"]["coaccess_dt"])
    reuse = _reuse_flags(candidates, tensor_reads, k).groupby("run")["reused"].agg(["size", "mean"])
    reuse.columns = ["reads", "reuse_fraction"]
    co = _coaccess_counts(tensor_reads, dt).groupby("run")["other_workers"]
    co = pd.DataFrame(
        {
            "coaccess_mean": co.mean(),
            "coaccess_median": co.median(),
            "coaccess_p90": co.quantile(0.9),
            "coaccessed_fraction": co.apply(lambda x: float((x > 0).mean())),
        }
    )
    out = reuse.join(co, how="outer").reset_index()
    out["reuse_k"] = k
    out["coaccess_dt"] = dt
    return out


def blom(r, w):
    """Blom's approximation of the expected r-th smallest of w standard normal draws (Royston, AS 177)."""
    r, w = np.asarray(r, float), np.asarray(w, float)
    return norm.ppf((r - np.pi / 8) / (w - np.pi / 4 + 1))


def quanta_delay(s, w):
    """Upper bound, in training-time standard deviations, on the delay of a scheduling quanta of s out of
    w workers that all started together. With E(r, w) the expected r-th smallest (Blom) the paper's
    E(s, w) - E(w, w) is <= 0: the s-th completion comes before the last. We report its magnitude
    E(w, w) - E(s, w) >= 0, the expected gap between the s-th and the last of the w completions (the
    paper's expression with order statistics counted from the largest); it is 0 for s = w."""
    return blom(w, w) - blom(s, w)


def training_times(candidates: pd.DataFrame) -> pd.DataFrame:
    """Training time of each successful candidate (run, seconds): train_seconds when traced, else end - start."""
    ok = candidates[candidates["status"] == "ok"]
    span = (ok["end_time"] - ok["start_time"]).astype(float)
    if "train_seconds" in ok.columns:
        span = ok["train_seconds"].astype(float).fillna(span)
    return pd.DataFrame({"run": ok["run"].to_numpy(), "seconds": span.to_numpy()})


def quanta(candidates, tensor_reads, params) -> pd.DataFrame:
    """The scheduling-quanta delay bound over analysis.quanta.s x analysis.quanta.w (s <= w), scaled by
    each run's measured training-time standard deviation to give seconds."""
    q = params["analysis"]["quanta"]
    grid = pd.DataFrame([(s, w) for w in q["w"] for s in q["s"] if s <= w], columns=["s", "w"], dtype=np.int64)
    grid["e_s"] = blom(grid["s"], grid["w"])
    grid["e_w"] = blom(grid["w"], grid["w"])
    grid["delay_sd"] = quanta_delay(grid["s"], grid["w"])
    runs = training_times(candidates).groupby("run", sort=True)["seconds"].agg(train_mean="mean", train_sd="std")
    runs = runs.reset_index()
    out = runs.merge(grid, how="cross")
    out["delay_seconds"] = out["delay_sd"] * out["train_sd"]
    return out[["run", "s", "w", "e_s", "e_w", "delay_sd", "train_mean", "train_sd", "delay_seconds"]]


TABLES = {
    "popular_tensor_reads": popular_tensor_reads,
    "worker_reuse": worker_reuse,
    "coaccess": coaccess,
    "locality": locality,
    "quanta": quanta,
}
