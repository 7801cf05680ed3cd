"""RQ3 (Section V-D, Fig. 4): when a prefix, and the model behind it, becomes popular and when it fades.

The population is a sliding window of the last p candidates, so prefix histograms over that window show
which tensors a cache should hold; popularity tiers, the donor/parent probabilities given past donations
and the lag before a new best model becomes a parent turn that into caching and prefetching thresholds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .common import (arch_matrix, concat_runs, inserted, is_ok, num_choices, population_sample, population_size,
                     prefix_ids, prefix_keys, seq_label)

ROLES = {"donor": "donor_id", "parent": "parent_id"}


def _runs(candidates: pd.DataFrame, params) -> list[str]:
    present = set(candidates["run"].unique())
    listed = [r for r in params.get("runs", {}) if r in present]
    return listed + sorted(present - set(listed))


def _ids(series) -> np.ndarray:
    """Nullable id column as int64 with -1 for null (parent_id, donor_id, insert_seq)."""
    return pd.to_numeric(series).fillna(-1).to_numpy().astype(np.int64)


def prefixed(candidates: pd.DataFrame, params) -> pd.DataFrame:
    """Candidates in creation order with their prefix id: the rank of their first analysis.prefix_len
    choices in lexicographic order among all prefixes of the run, so ids agree across a row of Fig. 4."""
    length = int(params["analysis"]["prefix_len"])
    parts = []
    for run in _runs(candidates, params):
        c = candidates[candidates["run"] == run].sort_values("job_id", kind="stable")
        m = arch_matrix(c)[:, :length]
        ids = prefix_ids(prefix_keys(m, length)).to_numpy()
        first = np.unique(ids, return_index=True)[1]
        labels = np.array([seq_label(row) for row in m[first]], dtype=object)
        parts.append(
            pd.DataFrame(
                {
                    "run": run,
                    "job_id": c["job_id"].to_numpy(np.int64),
                    "stage": c["stage"].to_numpy(np.int64),
                    "prefix_id": ids,
                    "prefix": labels[ids],
                }
            )
        )
    return concat_runs(parts, ["run", "job_id", "stage", "prefix_id", "prefix"])


def prefix_table(candidates, tensor_reads, params) -> pd.DataFrame:
    """The id -> prefix legend of each row of Fig. 4, with how many candidates of the run carry it."""
    pre = prefixed(candidates, params)
    out = pre.groupby(["run", "prefix_id", "prefix"], sort=False).size().rename("candidates").reset_index()
    return out.sort_values(["run", "prefix_id"], kind="stable").reset_index(drop=True)


def tier_of(count, window, tiers) -> np.ndarray:
    """Tier 1: at least tier1_fraction of the window; tier 3: at most tier3_max occurrences; tier 2:
    between. Tier 1 wins when both hold (windows shorter than tier3_max / tier1_fraction)."""
    count, window = np.asarray(count, float), np.asarray(window, float)
    tier = np.where(count <= tiers["tier3_max"], 3, 2)
    return np.where(count >= tiers["tier1_fraction"] * window, 1, tier).astype(np.int64)


def _window_counts(pre: pd.DataFrame, ends: np.ndarray, p: int) -> pd.DataFrame:
    """Prefix counts over the last p candidates in creation order before each end (candidates seen).
    Candidate j lies in the windows ending at e with j < e <= j + p, so each candidate is expanded only
    into the ~p/step windows that hold it."""
    ends = np.asarray(ends, np.int64)
    j = pre["job_id"].to_numpy(np.int64)
    first = np.searchsorted(ends, j, side="right")
    last = np.searchsorted(ends, j + p, side="right")
    reps = last - first
    rows = np.repeat(np.arange(len(j)), reps)
    which = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps) + np.repeat(first, reps)
    ids = pre["prefix_id"].to_numpy(np.int64)
    width = int(ids.max()) + 1 if len(ids) else 1
    keys, counts = np.unique(which * width + ids[rows], return_counts=True)
    seen = ends[keys // width]
    return pd.DataFrame({"seen": seen, "prefix_id": keys % width, "count": counts, "window": np.minimum(seen, p)})


def _windows(candidates, params, ends_of) -> pd.DataFrame:
    pre = prefixed(candidates, params)
    tiers = params["analysis"]["tiers"]
    parts = []
    for run, c in pre.groupby("run", sort=False):
        p = population_size(params, run)
        ends = ends_of(len(c), p)
        counts = _window_counts(c, ends, p)
        legend = c.drop_duplicates("prefix_id").set_index("prefix_id")["prefix"]
        counts.insert(0, "run", run)
        counts["prefix"] = legend.reindex(counts["prefix_id"]).to_numpy()
        counts["tier"] = tier_of(counts["count"], counts["window"], tiers)
        parts.append(counts)
    return concat_runs(parts, ["run", "seen", "window", "prefix_id", "prefix", "count", "tier"])


MAX_FRAMES = 200  # frames of one run's animation, so a 10^6-candidate trace stays small


def frame_ends(n: int, p: int) -> np.ndarray:
    """Animation frames every ~p/10 candidates (more sparsely when that would give more than about
    MAX_FRAMES frames), plus the end of the search."""
    step = max(1, round(p / 10), math.ceil(n / MAX_FRAMES))
    return np.unique(np.r_[np.arange(step, n + 1, step), n]).astype(np.int64)


def prefix_snapshots(candidates, tensor_reads, params) -> pd.DataFrame:
    """Fig. 4: prefix histograms of the last p candidates once analysis.snapshots candidates have been
    seen (snapshots beyond the run's length are left out)."""
    snaps = sorted({int(n) for n in params["analysis"]["snapshots"]})
    return _windows(candidates, params, lambda n, p: np.array([s for s in snaps if 1 <= s <= n], np.int64))


def prefix_frames(candidates, tensor_reads, params) -> pd.DataFrame:
    """The animated Fig. 4: the same histograms every ~p/10 candidates over the whole search (at most
    about MAX_FRAMES windows per run, see frame_ends)."""
    return _windows(candidates, params, frame_ends)


def tiers(candidates, tensor_reads, params) -> pd.DataFrame:
    """Popularity tiers of each animation window: how many prefixes, and which share of the window's
    candidates, fall in tier 1, 2 and 3."""
    w = prefix_frames(candidates, tensor_reads, params)
    out = w.groupby(["run", "seen", "window", "tier"], sort=False).agg(
        prefixes=("count", "size"), candidates=("count", "sum")
    )
    out = out.unstack("tier", fill_value=0).reindex(columns=pd.MultiIndex.from_product(
        [["prefixes", "candidates"], [1, 2, 3]], names=[None, "tier"]), fill_value=0)
    out = out.stack("tier", future_stack=True).reset_index()
    out["share"] = out["candidates"] / out["window"]
    return out[["run", "seen", "window", "tier", "prefixes", "candidates", "share"]]


def _role_probability(c: pd.DataFrame, column: str, p: int, k_max: int) -> pd.DataFrame:
    """P(model used in the next window | used >= k times in the last window) over consecutive full,
    non-overlapping windows of p candidates in creation order. k = 0 is the base rate: every successful
    model created before the next window (the repository a donor is drawn from) counts as at risk."""
    job = c["job_id"].to_numpy(np.int64)
    windows = (int(job.max()) + 1) // p if len(job) else 0
    used = _ids(c[column])
    keep = (used >= 0) & (job < windows * p)
    uses = pd.DataFrame({"window": job[keep] // p, "model": used[keep]}).value_counts().rename("n").reset_index()
    last = uses[uses["window"] <= windows - 2]
    nxt = uses[["window", "model"]].assign(window=uses["window"] - 1, hit=True)
    last = last.merge(nxt, on=["window", "model"], how="left")
    hit = last["hit"].fillna(False).to_numpy(bool)
    n = last["n"].to_numpy(np.int64)

    ok_jobs = np.sort(job[is_ok(c).to_numpy()])
    starts = np.arange(1, windows, dtype=np.int64) * p
    at_risk = int(np.searchsorted(ok_jobs, starts, side="left").sum())
    later = uses[(uses["window"] >= 1) & (uses["model"] < uses["window"] * p)]
    base_hits = len(later)
    rows = [(0, at_risk, base_hits)]
    rows += [(k, int((n >= k).sum()), int(((n >= k) & hit).sum())) for k in range(1, k_max + 1)]
    out = pd.DataFrame(rows, columns=["k", "models", "hits"])
    out["probability"] = out["hits"] / out["models"].where(out["models"] > 0)
    out["base_rate"] = out["probability"].iloc[0]
    out["lift"] = out["probability"] / out["base_rate"]
    out["windows"] = max(windows - 1, 0)
    return out


def reuse_probability(candidates, tensor_reads, params) -> pd.DataFrame:
    """The caching threshold of Section V-D: the empirical probability that a model is a donor (and,
    separately, a parent) in the next window of p candidates given >= k uses in that same role in the
    last window, k = 1..analysis.donor_k_max, against the base rate (k = 0). `threshold` marks
    k = analysis.popularity_threshold, the study's 'more than 5 transfers in the last 100'."""
    k_max = int(params["analysis"]["donor_k_max"])
    threshold = int(params["analysis"]["popularity_threshold"])
    parts = []
    for run in _runs(candidates, params):
        c = candidates[candidates["run"] == run]
        for role, column in ROLES.items():
            part = _role_probability(c, column, population_size(params, run), k_max)
            part.insert(0, "role", role)
            part.insert(0, "run", run)
            parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["threshold"] = out["k"] == threshold
    return out


def birthday_bound(c, k, p=0.5):
    """Diaconis-Mosteller: the sample size for some of c equally likely prefixes to occur at least k
    times with probability p, [c^(k-1) k! ln(1/(1-p))]^(1/k); computed in logs since c^(k-1) overflows."""
    c, k = np.asarray(c, float), np.asarray(k, float)
    return np.exp(((k - 1) * np.log(c) + gammaln(k + 1) + np.log(np.log(1 / (1 - p)))) / k)


def birthday(candidates, tensor_reads, params) -> pd.DataFrame:
    """Is the most frequent stage-1 prefix explained by coincidence alone? For the observed maximum count
    k, the stage-1 size is compared with the p = 0.5 bound for k and for k + 1: a size between the two is
    what uniform random sampling gives. c is the product of the first prefix_len choice counts
    (params runs.<run>.num_choices, else the choices seen in the run)."""
    length = int(params["analysis"]["prefix_len"])
    pre = prefixed(candidates, params)
    rows = []
    for run, c in pre.groupby("run", sort=False):
        stage1 = c[c["stage"] == 1]
        choices = num_choices(params, run, candidates[candidates["run"] == run])
        space = float(np.prod(np.asarray(choices[:length], float)))
        counts = stage1["prefix_id"].value_counts()
        k = int(counts.max()) if len(counts) else 0
        rows.append((run, len(stage1), space, len(counts), k))
    out = pd.DataFrame(rows, columns=["run", "stage1_size", "prefix_space", "distinct_prefixes", "max_count"])
    out["bound_p50"] = birthday_bound(out["prefix_space"], out["max_count"])
    out["next_bound_p50"] = birthday_bound(out["prefix_space"], out["max_count"] + 1)
    out["size_over_bound"] = out["stage1_size"] / out["bound_p50"]
    return out


def _lag_events(c: pd.DataFrame, p: int, s: int) -> pd.DataFrame:
    ok = inserted(c)
    quality = ok["quality"].to_numpy(float)
    best = np.maximum.accumulate(quality) if len(quality) else quality
    new = np.r_[True, quality[1:] > best[:-1]] if len(quality) else np.zeros(0, bool)
    events = ok[new]
    seq = _ids(events["insert_seq"])

    stage2 = c[c["stage"] == 2].sort_values("job_id", kind="stable")
    version = np.maximum.accumulate(_ids(stage2["population_version"])) if len(stage2) else np.zeros(0, np.int64)
    stage2_jobs = stage2["job_id"].to_numpy(np.int64)

    def first_job(at):
        if not len(stage2_jobs):
            return np.full(len(at), -1, np.int64)
        return np.where(at < len(stage2_jobs), stage2_jobs[np.minimum(at, len(stage2_jobs) - 1)], -1)

    available = first_job(np.searchsorted(version, seq, side="right"))
    retired = first_job(np.searchsorted(version, seq + p, side="right"))

    parents = _ids(c["parent_id"])
    children = c.assign(parent=parents)[parents >= 0]
    first_child = children.groupby("parent")["job_id"].min().reindex(events["job_id"].to_numpy()).to_numpy()
    starts = c.set_index("job_id")["start_time"].astype(float)
    child_start = starts.reindex(first_child).to_numpy(float)

    out = pd.DataFrame(
        {
            "job_id": events["job_id"].to_numpy(np.int64),
            "insert_seq": seq,
            "stage": events["stage"].to_numpy(np.int64),
            "quality": events["quality"].to_numpy(float),
            "available_at": pd.array(np.where(available >= 0, available, None), dtype="Int64"),
            "retired_at": pd.array(np.where(retired >= 0, retired, None), dtype="Int64"),
            "first_child": pd.array(first_child, dtype="Int64"),
        }
    )
    out["lag"] = out["first_child"] - out["available_at"] + 1
    out["lag_seconds"] = child_start - events["end_time"].to_numpy(float)
    chance_ends = out["first_child"].fillna(out["retired_at"]).astype("Float64").fillna(np.inf)
    next_available = out["available_at"].shift(-1)
    out["superseded"] = (next_available.notna() & (next_available <= chance_ends)).fillna(False).astype(bool)
    out["censored"] = out["first_child"].isna().to_numpy() & ~out["superseded"].to_numpy()
    out["expected_lag"] = p / s
    return out


def improvement_lag(candidates, tensor_reads, params) -> pd.DataFrame:
    """Each new cumulative maximum quality (in insertion order) and the creations until its first child.

    Once inserted, a new best model wins every tournament whose sample of s out of p holds it, so each
    creation picks it as parent with probability s/p: the lag is geometric with mean p/s creations
    (`expected_lag`). `available_at` is the first stage-2 creation that could sample it; `lag` counts
    creations from there to its first child, inclusive; `retired_at` the first creation after it left
    the population (p later insertions), which truncates the geometric law. `superseded`: a newer best
    became available before its first child (or retirement), so the model no longer applies;
    `censored`: never a parent, not superseded. `lag_seconds` is the prefetch opportunity: from the end
    of its training to the start of its first child."""
    parts = []
    for run in _runs(candidates, params):
        part = _lag_events(candidates[candidates["run"] == run], *population_sample(params, run))
        part.insert(0, "run", run)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def improvement_lag_summary(candidates, tensor_reads, params) -> pd.DataFrame:
    """Observed lags against the geometric expectation p/s, over the new maxima it applies to (picked
    before being superseded)."""
    events = improvement_lag(candidates, tensor_reads, params)
    picked = events[~events["superseded"] & events["lag"].notna()]
    lag = picked.assign(lag=picked["lag"].astype(float)).groupby("run").agg(
        picked=("lag", "size"), mean_lag=("lag", "mean"), median_lag=("lag", "median"),
        mean_lag_seconds=("lag_seconds", "mean"),
    )
    counts = events.groupby("run").agg(
        events=("job_id", "size"),
        superseded=("superseded", "sum"),
        censored=("censored", "sum"),
        expected_lag=("expected_lag", "first"),
    )
    out = counts.join(lag, how="left").reset_index()
    out["picked"] = out["picked"].fillna(0).astype(np.int64)
    cols = ["events", "picked", "superseded", "censored", "mean_lag", "median_lag", "expected_lag", "mean_lag_seconds"]
    return out[["run", *cols]]


TABLES = {
    "prefix_ids": prefix_table,
    "prefix_snapshots": prefix_snapshots,
    "prefix_frames": prefix_frames,
    "tiers": tiers,
    "reuse_probability": reuse_probability,
    "birthday": birthday,
    "improvement_lag": improvement_lag,
    "improvement_lag_summary": improvement_lag_summary,
}
