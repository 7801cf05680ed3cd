"""RQ2 (Section V-B, Fig. 2): how tensor accesses spread over asynchronous workers.

Transfer learning turns every candidate into a set of tensor reads. Which worker reads which tensor,
and when, tells whether worker-local caching (reuse on one worker) or broadcasting and co-scheduling
(co-access across workers) would pay off; the scheduling-quanta bound prices the co-scheduling."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from .common import factors, ok_candidates, tensor_codes, tensor_factors

FIG2_RANKS = (2, 3, 4)  # the most popular tensor is read everywhere, all the time: Fig. 2 leaves it out


def tensor_popularity(tensor_reads: pd.DataFrame) -> pd.DataFrame:
    """Popularity = number of reads; rank 1 is the most read tensor of a run (ties: smaller tensor_id)."""
    run_codes, run_names = factors(tensor_reads["run"])
    codes, ids = tensor_factors(tensor_reads)
    key = run_codes * len(ids) + codes
    reads = np.bincount(key, minlength=len(run_names) * len(ids)) if len(key) else np.zeros(0, np.int64)
    read = np.flatnonzero(reads)
    counts = pd.DataFrame({"run": np.asarray(run_names, dtype=object)[read // max(len(ids), 1)].astype(str),
                           "tensor_id": np.asarray(ids, dtype=object)[read % max(len(ids), 1)].astype(str),
                           "reads": reads[read]})
    counts = counts.sort_values(["run", "reads", "tensor_id"], ascending=[True, False, True], kind="stable")
    counts["rank"] = counts.groupby("run").cumcount() + 1
    return counts.reset_index(drop=True)


def popular_tensor_reads(candidates, tensor_reads, params) -> pd.DataFrame:
    """Fig. 2 points: every read of the 2nd-4th most popular tensors of each run (worker x start time)."""
    cols = ["run", "rank", "tensor_id", "reads", "worker", "job_id", "start_time", "owner_id", "position"]
    top = tensor_popularity(tensor_reads)
    top = top[top["rank"].isin(FIG2_RANKS)]
    keep = [c for c in cols if c in tensor_reads.columns and c not in ("rank", "reads")]
    points = tensor_reads.loc[tensor_reads["tensor_id"].isin(top["tensor_id"]), keep]
    points = points.astype({"run": str, "tensor_id": str}).merge(top, on=["run", "tensor_id"])
    return points[[c for c in cols if c in points.columns]].sort_values(
        ["run", "rank", "start_time", "worker"], kind="stable"
    ).reset_index(drop=True)


def _codes(values: pd.Series, categories) -> np.ndarray:
    """Integer code of each value in categories, -1 where absent."""
    return pd.Index(categories).get_indexer(values).astype(np.int64)


def _sorted_pairs(major: np.ndarray, minor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(major, minor) pairs sorted by major, then minor (both >= 0): through one packed int64 key when it
    fits, sorted by value (no index array: several times faster than an argsort and half the memory)."""
    span = int(minor.max()) + 1 if len(minor) else 1
    if len(major) and int(major.max()) < (1 << 62) // span:
        key = major * span + minor
        key.sort()
        minor = key % span
        key //= span
        return key, minor
    order = np.lexsort((minor, major))
    return major[order], minor[order]


def _reuse_counts(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per (run, worker): its (candidate, tensor) reads, and how many of them the same worker reads again
    within its next k candidates. A worker's candidates are ordered by start time; every candidate counts
    as a slot, also those that read nothing (a worker-local cache would have to hold the tensor through
    them). Counted in arrays, never as a frame of one row per read (7*10^7 of them at 10^6 candidates)."""
    runs = pd.unique(candidates["run"])
    empty = pd.DataFrame({"run": pd.Categorical([], categories=runs), "worker": np.zeros(0, np.int64),
                          "reads": np.zeros(0, np.int64), "reused": np.zeros(0, np.int64)})
    if candidates.empty or tensor_reads.empty:
        return empty
    c_run = _codes(candidates["run"], runs)
    c_job = candidates["job_id"].to_numpy(np.int64)
    c_worker = candidates["worker"].to_numpy(np.int64)
    by_start = np.lexsort((c_job, candidates["start_time"].to_numpy(float), c_worker, c_run))
    lane = c_run[by_start] * (c_worker.max() + 1) + c_worker[by_start]
    first = np.r_[0, np.flatnonzero(lane[1:] != lane[:-1]) + 1]
    slot = np.empty(len(c_job), np.int64)
    slot[by_start] = np.arange(len(lane)) - np.repeat(first, np.diff(np.r_[first, len(lane)]))

    stride = int(max(c_job.max(), tensor_reads["job_id"].max())) + 1
    c_key = c_run * stride + c_job
    c_order = np.argsort(c_key, kind="stable")
    c_key, slot = c_key[c_order], slot[c_order]
    r_run = _codes(tensor_reads["run"], runs)
    r_key = r_run * stride + tensor_reads["job_id"].to_numpy(np.int64)
    at = np.minimum(np.searchsorted(c_key, r_key), len(c_key) - 1)
    known = (r_run >= 0) & (c_key[at] == r_key)
    del r_key
    if not known.any():
        return empty
    r_slot = slot[at[known]]
    del at
    workers = int(tensor_reads["worker"].max()) + 1
    tensor = tensor_codes(tensor_reads)
    tensors = int(tensor.max()) + 1
    lane = (r_run[known] * workers + tensor_reads["worker"].to_numpy(np.int64)[known]) * tensors + tensor[known]
    del tensor, known
    lane, r_slot = _sorted_pairs(lane, r_slot)
    new = np.r_[True, (lane[1:] != lane[:-1]) | (r_slot[1:] != r_slot[:-1])]  # a candidate reading twice
    lane, r_slot = lane[new], r_slot[new]
    again = np.r_[(lane[1:] == lane[:-1]) & (r_slot[1:] - r_slot[:-1] <= k), False]
    run_worker = lane // tensors
    reads = np.bincount(run_worker, minlength=len(runs) * workers)
    reused = np.bincount(run_worker, weights=again, minlength=len(runs) * workers).astype(np.int64)
    seen = np.flatnonzero(reads)
    return pd.DataFrame({"run": pd.Categorical.from_codes(seen // workers, categories=runs), "worker": seen % workers,
                         "reads": reads[seen], "reused": reused[seen]})


def worker_reuse(candidates, tensor_reads, params) -> pd.DataFrame:
    """Per-worker temporal locality: the fraction of a worker's reads that it repeats within its next
    k = analysis.reuse_k candidates, i.e. the hit rate of an ideal worker-local cache holding k candidates."""
    k = int(params["analysis"]["reuse_k"])
    out = _reuse_counts(candidates, tensor_reads, k)
    out["run"] = out["run"].astype(str)
    out["reuse_fraction"] = out["reused"] / out["reads"]
    out["k"] = k
    return out


def _segment_bounds(group: np.ndarray, t: np.ndarray, mask: np.ndarray, stride: float, shift: float) -> np.ndarray:
    """group * stride + t + shift at the rows in mask, sorted; computed in place (7*10^7 rows)."""
    out = group[mask].astype(float)
    out *= stride
    out += t[mask]
    out += shift
    out.sort()
    return out


def _other_workers(tensor_reads: pd.DataFrame, dt: float) -> tuple[np.ndarray | slice, np.ndarray]:
    """(the rows with a start time, as positions or a slice of all; for each of them the number of other
    workers that read the same tensor of the same run within |t' - t| <= dt).

    Each worker's reads of a tensor cover [t - dt, t + dt]; overlapping covers merge into disjoint
    segments, one worker's segments never overlap, so the workers covering a read's time are the
    segments of that tensor that started at or before it minus those that ended before it: two sorted
    searches instead of a comparison of every pair of reads. The reader's own worker always covers it.
    The reads are sorted by time (the order the trace is nearly in already), then by value on packed keys
    by (tensor, worker, time) for the segments and by (tensor, time) for the searches."""
    t = tensor_reads["start_time"].to_numpy(float)
    known = ~np.isnan(t)
    timed = slice(None) if known.all() else np.flatnonzero(known)  # usually every read: no index array
    del known
    t = t[timed]
    if not len(t):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    run = factors(tensor_reads["run"])[0][timed]
    tensor = tensor_codes(tensor_reads)[timed]
    worker = pd.factorize(tensor_reads["worker"].to_numpy()[timed])[0]
    workers = int(worker.max()) + 1
    group = run * (int(tensor.max()) + 1) + tensor  # (run, tensor)
    del run, tensor
    lane = group * workers + worker  # (run, tensor, worker)
    del worker
    t0, stride = t.min(), np.ceil(t.max() - t.min() + 2 * dt + 1)
    by_time = np.argsort(t, kind="stable")
    g, rank = _sorted_pairs(group[by_time], np.arange(len(t)))  # by (run, tensor, time): sorted needles
    del group
    order = by_time[rank]
    del rank
    needles = g.astype(float)
    del g
    needles *= stride
    needles += t[order] - t0
    lane, rank = _sorted_pairs(lane[by_time], np.arange(len(t)))  # by (run, tensor, worker, time)
    ts = t[by_time[rank]] - t0
    del by_time, rank
    new = np.r_[True, (lane[1:] != lane[:-1]) | (ts[1:] - ts[:-1] > 2 * dt)]
    lane //= workers  # (run, tensor)
    last = np.r_[new[1:], True]
    starts, ends = (_segment_bounds(lane, ts, mask, stride, shift) for mask, shift in ((new, -dt), (last, dt)))
    del lane, ts, new, last
    covering = np.empty(len(t), np.int64)
    covering[order] = np.searchsorted(starts, needles, side="right") - np.searchsorted(ends, needles, side="left")
    return timed, covering - 1


def _coaccess_counts(tensor_reads: pd.DataFrame, dt: float) -> pd.DataFrame:
    """The reads with a start time, each with `other_workers` (see _other_workers)."""
    timed, others = _other_workers(tensor_reads, dt)
    cols = ["run", "job_id", "worker", "tensor_id", "start_time"]
    return tensor_reads[cols].iloc[timed].reset_index(drop=True).assign(other_workers=others)


def coaccess(candidates, tensor_reads, params) -> pd.DataFrame:
    """Distribution of cross-worker co-access per run: how many reads had 0, 1, 2 ... other workers
    reading the same tensor within dt = analysis.coaccess_dt seconds (broadcast opportunities)."""
    dt = float(params["analysis"]["coaccess_dt"])
    timed, others = _other_workers(tensor_reads, dt)
    counts = pd.DataFrame({"run": tensor_reads["run"].iloc[timed].reset_index(drop=True), "other_workers": others})
    out = counts.groupby(["run", "other_workers"], sort=True, observed=True).size().rename("reads").reset_index()
    out["run"] = out["run"].astype(str)
    out["fraction"] = out["reads"] / out.groupby("run")["reads"].transform("sum")
    out["dt"] = dt
    return out


def locality(candidates, tensor_reads, params) -> pd.DataFrame:
    """One line per run: worker-local reuse and cross-worker co-access summarized side by side."""
    k = int(params["analysis"]["reuse_k"])
    dt = float(params["analysis"]["coaccess_dt"])
    reuse = _reuse_counts(candidates, tensor_reads, k).groupby("run", observed=True)[["reads", "reused"]].sum()
    reuse.index = reuse.index.astype(str)
    reuse["reuse_fraction"] = reuse.pop("reused") / reuse["reads"]
    timed, others = _other_workers(tensor_reads, dt)
    co = pd.Series(others).groupby(tensor_reads["run"].iloc[timed].reset_index(drop=True), observed=True)
    co = pd.DataFrame(
        {
            "coaccess_mean": co.mean(),
            "coaccess_median": co.median(),
            "coaccess_p90": co.quantile(0.9),
            "coaccessed_fraction": co.apply(lambda x: float((x > 0).mean())),
        }
    )
    co.index = co.index.astype(str)
    out = reuse.join(co, how="outer").reset_index()
    out["reuse_k"] = k
    out["coaccess_dt"] = dt
    return out


def blom(r, w):
    """Blom's approximation of the expected r-th smallest of w standard normal draws (Royston, AS 177)."""
    r, w = np.asarray(r, float), np.asarray(w, float)
    return norm.ppf((r - np.pi / 8) / (w - np.pi / 4 + 1))


def quanta_delay(s, w):
    """E(w, w) - E(s, w) >= 0, in training-time standard deviations, with E(r, w) the expected r-th
    smallest of w (Blom): how much earlier the s-th of w completions comes than the last. Largest at
    s = 1 and 0 at s = w, so it is not the cost of a quanta; see quanta_wait."""
    return blom(w, w) - blom(s, w)


def quanta_wait(s, w):
    """E(s, w) - E(1, w) >= 0, in training-time standard deviations: how much later the s-th of w
    completions comes than the first, i.e. the wait a quanta of s adds over asynchronous dispatch when
    w workers start together (the worst case). 0 for s = 1, growing with s, as the study's trade-off
    says; the study writes it E(s, w) - E(w, w) with order statistics counted from the largest, which
    under the usual (smallest-first) convention used here is <= 0."""
    return blom(s, w) - blom(1, w)


def training_times(candidates: pd.DataFrame) -> pd.DataFrame:
    """Training time of each successful candidate (run, seconds): train_seconds when traced, else end - start."""
    ok = ok_candidates(candidates)
    span = (ok["end_time"] - ok["start_time"]).astype(float)
    if "train_seconds" in ok.columns:
        span = ok["train_seconds"].astype(float).fillna(span)
    return pd.DataFrame({"run": ok["run"].to_numpy(), "seconds": span.to_numpy()})


def quanta(candidates, tensor_reads, params) -> pd.DataFrame:
    """The wait a scheduling quanta of s out of w workers adds, over analysis.quanta.s x analysis.quanta.w
    (s <= w): `wait_sd` = E(s, w) - E(1, w) (quanta_wait), scaled by each run's measured training-time
    standard deviation to `wait_seconds`; `delay_sd` / `delay_seconds` = E(w, w) - E(s, w), the gap
    from the s-th to the last completion, for reference."""
    q = params["analysis"]["quanta"]
    grid = pd.DataFrame([(s, w) for w in q["w"] for s in q["s"] if s <= w], columns=["s", "w"], dtype=np.int64)
    grid["e_s"] = blom(grid["s"], grid["w"])
    grid["e_w"] = blom(grid["w"], grid["w"])
    grid["wait_sd"] = quanta_wait(grid["s"], grid["w"])
    grid["delay_sd"] = quanta_delay(grid["s"], grid["w"])
    runs = training_times(candidates).groupby("run", sort=True)["seconds"].agg(train_mean="mean", train_sd="std")
    out = runs.reset_index().merge(grid, how="cross")
    out["wait_seconds"] = out["wait_sd"] * out["train_sd"]
    out["delay_seconds"] = out["delay_sd"] * out["train_sd"]
    cols = ["run", "s", "w", "e_s", "e_w", "train_mean", "train_sd", "wait_sd", "wait_seconds", "delay_sd", "delay_seconds"]
    return out[cols]


def quanta_idle(candidates, tensor_reads, params) -> pd.DataFrame:
    """Measured idle time per dispatch of each run: on every worker, from the end of one candidate to
    the start of its next one (every candidate, failed ones included, occupies its worker). Runs with
    quanta q > 1 wait for q results before dispatching; q = 1 runs give the asynchronous baseline
    (the master's own overhead). `mean_idle_sd` is the mean in the run's training-time standard
    deviations, the unit of quanta_wait."""
    c = candidates[candidates["start_time"].notna() & candidates["end_time"].notna()]
    c = c.sort_values(["run", "worker", "start_time", "job_id"], kind="stable")
    same = (c["run"].to_numpy() == np.roll(c["run"].to_numpy(), 1)) & (c["worker"].to_numpy() == np.roll(c["worker"].to_numpy(), 1))
    same[:1] = False
    idle = c["start_time"].to_numpy(float) - np.roll(c["end_time"].to_numpy(float), 1)
    gaps = pd.DataFrame({"run": c["run"].to_numpy()[same], "idle": idle[same]})
    sd = training_times(candidates).groupby("run")["seconds"].std()
    rows = []
    for run, g in gaps.groupby("run", sort=True):
        spec = params.get("runs", {}).get(run, {})
        rows.append({"run": run, "quanta": int(spec.get("quanta", 1)),
                     "workers": int(spec.get("workers", candidates.loc[candidates["run"] == run, "worker"].nunique())),
                     "dispatches": len(g), "mean_idle_seconds": float(g["idle"].mean()),
                     "median_idle_seconds": float(g["idle"].median()), "train_sd": float(sd.get(run, np.nan))})
    out = pd.DataFrame(rows, columns=["run", "quanta", "workers", "dispatches", "mean_idle_seconds",
                                      "median_idle_seconds", "train_sd"])
    out["mean_idle_sd"] = out["mean_idle_seconds"] / out["train_sd"]
    return out


TABLES = {
    "popular_tensor_reads": popular_tensor_reads,
    "worker_reuse": worker_reuse,
    "coaccess": coaccess,
    "locality": locality,
    "quanta": quanta,
    "quanta_idle": quanta_idle,
}
