"""RQ3 (Section V-D, Fig. 4): when a prefix, and the model behind it, becomes popular and when it fades.

The population is a sliding window of the last p candidates, so prefix histograms over that window show
which tensors a cache should hold; popularity tiers, the donor/parent probabilities given past donations
and the lag before a new best model becomes a parent turn that into caching and prefetching thresholds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .common import (arch_matrix, concat_runs, inserted, num_choices, population_sample, population_size,
                     prefix_ids, prefix_keys, seq_label, tensor_codes)

ROLES = {"donor": "donor_id", "parent": "parent_id"}  # and "tensor": the reads of each tensor


def _runs(candidates: pd.DataFrame, params) -> list[str]:
    present = set(candidates["run"].unique())
    listed = [r for r in params.get("runs", {}) if r in present]
    return listed + sorted(present - set(listed))


def _ids(series) -> np.ndarray:
    """Nullable id column as int64 with -1 for null (parent_id, donor_id, insert_seq)."""
    return pd.to_numeric(series).fillna(-1).to_numpy().astype(np.int64)


def prefixed(candidates: pd.DataFrame, params) -> pd.DataFrame:
    """Candidates in creation order with their prefix id: the rank of their first analysis.prefix_len
    choices in lexicographic order among all prefixes of the run, so ids agree across a row of Fig. 4;
    insert_seq is -1 for candidates that never entered the population (failed)."""
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
                    "insert_seq": _ids(c["insert_seq"]) if "insert_seq" in c else np.full(len(c), -1, np.int64),
                    "prefix_id": ids,
                    "prefix": labels[ids],
                }
            )
        )
    return concat_runs(parts, ["run", "job_id", "stage", "insert_seq", "prefix_id", "prefix"])


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


WINDOWS = {"population": "insert_seq", "created": "job_id"}  # analysis.prefix_window -> ordering column


def _window_counts(pre: pd.DataFrame, ends: np.ndarray, p: int, order: str = "job_id") -> pd.DataFrame:
    """Prefix counts over the p rows before each end in `order` (insert_seq: the population after
    `end` insertions; job_id: the last p candidates created). Row j lies in the windows ending at e with
    j < e <= j + p, so each row is expanded only into the ~p/step windows that hold it."""
    pre = pre[pre[order] >= 0]
    f = _sliding(pre[order].to_numpy(np.int64), pre["prefix_id"].to_numpy(np.int64), np.asarray(ends, np.int64), p)
    return pd.DataFrame({"seen": f["end"], "prefix_id": f["id"], "count": f["count"], "window": np.minimum(f["end"], p)})


def prefix_window(params) -> str:
    """analysis.prefix_window: 'population' (default, the paper's 'last 100 ... (the current
    population)': the last p inserted) or 'created' (the last p candidates created, failed ones and
    those still training included)."""
    kind = params["analysis"].get("prefix_window", "population")
    if kind not in WINDOWS:
        raise KeyError(f"analysis.prefix_window is {kind!r}; one of {', '.join(WINDOWS)}")
    return kind


def _windows(candidates, params, ends_of) -> pd.DataFrame:
    pre = prefixed(candidates, params)
    tiers = params["analysis"]["tiers"]
    order = WINDOWS[prefix_window(params)]
    parts = []
    for run, c in pre.groupby("run", sort=False):
        p = population_size(params, run)
        ends = ends_of(int((c[order] >= 0).sum()), p)
        counts = _window_counts(c, ends, p, order)
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
    """Fig. 4: prefix histograms of the population (analysis.prefix_window) once `seen` = analysis.snapshots
    candidates have been inserted (or created, for the 'created' window); snapshots beyond the run's
    length are left out."""
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


def _sliding(position: np.ndarray, ids: np.ndarray, ends: np.ndarray, window: int) -> pd.DataFrame:
    """How often each id occurs at positions [end - window, end), for every end (sorted)."""
    first = np.searchsorted(ends, position, side="right")
    last = np.searchsorted(ends, position + window, side="right")
    reps = last - first
    rows = np.repeat(np.arange(len(position)), reps)
    which = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps) + np.repeat(first, reps)
    width = int(ids.max()) + 1 if len(ids) else 1
    keys, counts = np.unique(which * width + ids[rows], return_counts=True)
    return pd.DataFrame({"end": ends[keys // width], "id": keys % width, "count": counts})


READS_PER_CHUNK = 2_000_000  # tensor reads held at once by _popularity: bounds its memory at any trace size


def _grid_below(x, window: int, step: int, count: int) -> np.ndarray:
    """How many of the window ends window, window + step, ... (count of them) lie below x."""
    return np.clip(-((window - np.asarray(x, np.int64)) // step), 0, count)


def _popularity(job, ids, n, window, k_max, lo, hi, at_risk, reads_per_chunk=READS_PER_CHUNK) -> pd.DataFrame:
    """P(used in the next `window` candidates | used more than k times in the last `window`), pooled
    over sliding windows ending every window/10 candidates, for models (or tensors) eligible at the end
    (id i is eligible at ends lo[i] <= end < hi[i]); the base rate is the share of the at_risk(end)
    eligible ones used in the next window.

    Exact, without listing (end, id) pairs: per id, the counts in the last and the next window and the
    eligibility are step functions of the end that change only where a use enters or leaves a window, so
    the changes, sorted and summed, give runs of ends with constant values, and the grid is counted per
    run. Uses are first merged into blocks of gcd(window, step) candidates, the same for every end on
    the grid. Ends are taken in chunks of about reads_per_chunk uses, so memory does not grow with the
    trace."""
    step = max(1, window // 10)
    ends = np.arange(window, n - window + 1, step, dtype=np.int64)
    rows = [(k, 0, 0) for k in range(k_max + 1)]
    base_models = base_hits = 0
    if len(ends) and len(job):
        job, ids = np.asarray(job, np.int64), np.asarray(ids, np.int64)
        if (job[1:] < job[:-1]).any():  # traces are written in job order: no copy then
            order = np.argsort(job, kind="stable")
            job, ids = job[order], ids[order]
        g, count = math.gcd(window, step), len(ends)
        per_end = max(1.0, len(job) / max(n, 1) * step)
        chunk = max(1, int(reads_per_chunk / per_end)) * step
        models, hits = np.zeros(k_max + 2, np.int64), np.zeros(k_max + 2, np.int64)
        hi = np.maximum(lo, hi)
        for t0 in range(int(ends[0]), int(ends[-1]) + 1, chunk):
            t1 = min(t0 + chunk, int(ends[-1]) + 1)
            a, b = np.searchsorted(job, [t0 - window, t1 + window])
            if a == b:
                continue
            first = (t0 - window) // g
            width = (t1 + window) // g - first + 1
            keys, uses = np.unique(ids[a:b] * width + job[a:b] // g - first, return_counts=True)
            who, block = keys // width, (keys % width + first) * g
            members = np.unique(who)
            # where each use enters and leaves the last window, enters and leaves the next, and eligibility
            starts = [block + g, block + window + 1, block + g - window, block + 1, lo[members], hi[members]]
            owners = [who, who, who, who, members, members]
            span = t1 - t0 + 1
            at = np.concatenate([o * span + np.clip(s, t0, t1) - t0 for o, s in zip(owners, starts)])
            order = np.argsort(at, kind="stable")  # six runs, each already sorted: a merge
            at = at[order]
            u, m = len(who), len(members)
            last = np.concatenate([uses, -uses, np.zeros(2 * u + 2 * m, np.int64)])[order].cumsum()
            nxt = np.concatenate([np.zeros(2 * u, np.int64), uses, -uses, np.zeros(2 * m, np.int64)])[order].cumsum()
            elig = np.concatenate([np.zeros(4 * u, np.int64), np.ones(m, np.int64), -np.ones(m, np.int64)])[order].cumsum()
            pos = at % span + t0
            same = at[1:] // span == at[:-1] // span
            below = _grid_below(pos, window, step, count)
            grid = np.zeros(len(at), np.int64)
            grid[:-1] = np.where(same, below[1:] - below[:-1], 0)
            keep = (elig > 0) & (grid > 0)
            used = keep & (last > 0)
            models += np.bincount(np.minimum(last[used], k_max + 1), weights=grid[used], minlength=k_max + 2).astype(np.int64)
            hit = used & (nxt > 0)
            hits += np.bincount(np.minimum(last[hit], k_max + 1), weights=grid[hit], minlength=k_max + 2).astype(np.int64)
            base_hits += int(grid[keep & (nxt > 0)].sum())
        above_models, above_hits = np.cumsum(models[::-1])[::-1], np.cumsum(hits[::-1])[::-1]
        rows = [(k, int(above_models[k + 1]), int(above_hits[k + 1])) for k in range(k_max + 1)]
        base_models = int(at_risk(ends).sum())
    out = pd.DataFrame(rows, columns=["k", "models", "hits"])
    out["probability"] = out["hits"] / out["models"].where(out["models"] > 0)
    out["base_models"], out["base_hits"] = base_models, base_hits
    out["base_rate"] = base_hits / base_models if base_models else np.nan
    out["lift"] = out["probability"] / out["base_rate"]
    out["window"], out["windows"] = window, len(ends)
    return out


def _role_uses(c: pd.DataFrame, reads: pd.DataFrame, role: str, p: int, n: int, window: int):
    """(job, id) of every use in `role`, the ends lo[id] <= end < hi[id] at which each id is eligible,
    and at_risk(ends): a parent must be a population member when the candidate at `end` is created
    (insert_seq in [v - p, v)); a donor any model stored by then (insert_seq < v); a tensor any tensor
    read before `end`."""
    version = np.full(n, -1, np.int64)
    version[c["job_id"].to_numpy(np.int64)] = _ids(c["population_version"])
    version = np.maximum.accumulate(version)
    never = n + window + 1  # beyond every end
    if role == "tensor":
        codes = tensor_codes(reads)
        job = reads["job_id"].to_numpy(np.int64)
        first = np.full(int(codes.max()) + 1 if len(codes) else 0, never, np.int64)
        np.minimum.at(first, codes, job)
        sorted_first = np.sort(first)
        return (job, codes, first + 1, np.full(len(first), never, np.int64),
                lambda ends: np.searchsorted(sorted_first, ends, side="left"))
    used = _ids(c[ROLES[role]])
    job = c["job_id"].to_numpy(np.int64)[used >= 0]
    ids = used[used >= 0]
    seq = np.full(n, -1, np.int64)
    seq[c["job_id"].to_numpy(np.int64)] = _ids(c["insert_seq"])
    stored = c["stored"].fillna(True).to_numpy(bool) if "stored" in c else np.ones(len(c), bool)
    lo = np.where(seq >= 0, np.searchsorted(version, seq, side="right"), never)
    if role == "parent":
        hi = np.where(seq >= 0, np.searchsorted(version, seq + p, side="right"), never)
        return job, ids, lo, hi, lambda ends: np.minimum(version[ends], p)
    storable = np.sort(seq[c["job_id"].to_numpy(np.int64)][stored & (_ids(c["insert_seq"]) >= 0)])
    return (job, ids, lo, np.full(n, never, np.int64),
            lambda ends: np.searchsorted(storable, version[ends], side="left"))


def reuse_probability(candidates, tensor_reads, params) -> pd.DataFrame:
    """The caching rule of Section V-D taken literally: the empirical probability that a model is a donor
    (or a parent), or a tensor is transferred, in the next analysis.popularity_window candidates given
    more than k such uses in the last window (sliding, k = 0..analysis.donor_k_max), against the base
    rate among those that could be used: population members for parents (only they can be drawn),
    stored models for donors, tensors read before for tensors. `threshold` marks
    k = analysis.popularity_threshold, the study's 'more than 5 transfers in the last 100'."""
    analysis = params["analysis"]
    k_max = int(analysis["donor_k_max"])
    threshold = int(analysis["popularity_threshold"])
    window = int(analysis.get("popularity_window", 100))
    parts = []
    for run in _runs(candidates, params):
        c = candidates[candidates["run"] == run]
        reads = tensor_reads[tensor_reads["run"] == run] if len(tensor_reads) else tensor_reads
        n = int(c["job_id"].max()) + 1 if len(c) else 0
        for role in ("donor", "parent", "tensor"):
            if role == "tensor" and not len(reads):
                continue
            job, ids, lo, hi, at_risk = _role_uses(c, reads, role, population_size(params, run), n, window)
            part = _popularity(job, ids, n, window, k_max, lo, hi, at_risk)
            part.insert(0, "role", role)
            part.insert(0, "run", run)
            parts.append(part)
    cols = ["run", "role", "k", "models", "hits", "probability", "base_models", "base_hits", "base_rate", "lift",
            "window", "windows"]
    out = concat_runs(parts, cols)
    out["threshold"] = out["k"] == threshold
    return out


def birthday_bound(c, k, p=0.5):
    """Diaconis-Mosteller: the sample size for some of c equally likely prefixes to occur at least k
    times with probability p, [c^(k-1) k! ln(1/(1-p))]^(1/k); computed in logs since c^(k-1) overflows.
    An asymptotic formula: for c = 125 it is 7-26 % below the exact size (birthday_size)."""
    c, k = np.asarray(c, float), np.asarray(k, float)
    return np.exp(((k - 1) * np.log(c) + gammaln(k + 1) + np.log(np.log(1 / (1 - p)))) / k)


def _merge_bins(h_a: np.ndarray, a: int, h_b: np.ndarray, b: int) -> np.ndarray:
    """P(all counts < k) for a + b bins from the same for a and b bins, at every sample size m: the m
    draws split binomially, i of them into the first a bins with probability a / (a + b) each."""
    m = np.arange(len(h_a))
    lf = gammaln(m + 1.0)
    i = m[None, :]
    j = m[:, None] - i
    inside = j >= 0
    jc = np.where(inside, j, 0)
    q = a / (a + b)
    log_split = lf[:, None] - lf[None, :] - lf[jc] + i * np.log(q) + jc * np.log1p(-q)
    split = np.where(inside, np.exp(np.where(inside, log_split, 0.0)), 0.0)  # split[m, i]
    return (split * h_b[jc]) @ h_a


def below_k_probability(c: int, k: int, n_max: int) -> np.ndarray:
    """Exact P(each of c equally likely prefixes occurs fewer than k times in n uniform draws) for
    n = 0..n_max, by merging bins in binary (O(n_max^2 log c)); the birthday problem is c=365, k=2."""
    h_bin = (np.arange(n_max + 1) < k).astype(float)  # one bin
    result, bins = None, 0
    block, size = h_bin, 1
    c = int(c)
    while c:
        if c & 1:
            result, bins = (block, size) if result is None else (_merge_bins(result, bins, block, size), bins + size)
        c >>= 1
        if c:
            block, size = _merge_bins(block, size, block, size), 2 * size
    return result


def max_count_probability(c: int, k: int, n: int) -> float:
    """Exact P(some prefix occurs at least k times among n uniform draws from c prefixes)."""
    if k <= 1:
        return 1.0 if n >= k else 0.0
    return float(1.0 - below_k_probability(c, k, n)[n])


def birthday_size(c: int, k: int, p: float = 0.5) -> int:
    """The exact birthday size: the least n for which some of c equally likely prefixes occurs at least
    k times with probability >= p (23 for c = 365, k = 2). By pigeonhole n <= c (k - 1) + 1."""
    if k <= 1:
        return int(k)
    top = int(c) * (k - 1) + 1
    n_max = int(min(top, max(1.5 * float(birthday_bound(c, k, p)) + 4 * k, k)))
    while True:
        reached = np.flatnonzero(1.0 - below_k_probability(c, k, n_max) >= p)
        if len(reached):
            return int(reached[0])
        n_max = min(top, 2 * n_max)


def birthday(candidates, tensor_reads, params) -> pd.DataFrame:
    """Is the most frequent stage-1 prefix explained by coincidence alone? For the observed maximum count
    k among the stage-1 candidates, `p_max_count` is the exact probability that uniform sampling of that
    many candidates gives some prefix k or more times (small: the space is biased); beside it the exact
    sample size for k at p = 0.5 (`exact_p50`) and the asymptotic Diaconis-Mosteller bound for k and
    k + 1 (`bound_p50`, `next_bound_p50`), which underestimates it. c is the product of the first
    prefix_len choice counts (params runs.<run>.num_choices, else the choices seen in the run)."""
    length = int(params["analysis"]["prefix_len"])
    pre = prefixed(candidates, params)
    rows = []
    for run, c in pre.groupby("run", sort=False):
        stage1 = c[c["stage"] == 1]
        choices = num_choices(params, run, candidates[candidates["run"] == run])
        space = float(np.prod(np.asarray(choices[:length], float)))
        counts = stage1["prefix_id"].value_counts()
        k = int(counts.max()) if len(counts) else 0
        exact = birthday_size(int(space), k) if k else 0
        p_max = max_count_probability(int(space), k, len(stage1)) if k else np.nan
        rows.append((run, len(stage1), space, len(counts), k, p_max, exact))
    out = pd.DataFrame(rows, columns=["run", "stage1_size", "prefix_space", "distinct_prefixes", "max_count",
                                      "p_max_count", "exact_p50"])
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
    out["observed"] = out["lag"].notna().to_numpy() & ~out["superseded"].to_numpy()
    # creations during which it was the best and could be picked: until its first child, a newer best,
    # its retirement or the end of the search (N creations), whichever comes first
    end = float(c["job_id"].max()) + 1 if len(c) else 0.0
    stop = out["retired_at"].astype("Float64").fillna(end).to_numpy(float)
    stop = np.minimum(stop, next_available.astype("Float64").fillna(np.inf).to_numpy(float))
    exposure = stop - out["available_at"].astype("Float64").to_numpy(float)
    out["at_risk"] = np.where(out["observed"], out["lag"].astype("Float64").to_numpy(float), exposure)
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


def kaplan_meier(durations, observed) -> tuple[float, float]:
    """(restricted mean, median) of a lag in whole creations from right-censored durations: an observed
    lag L (>= 1) is an event at L; a censored d means the lag exceeds d (it survived d creations).
    The mean is the sum of the survival curve P(lag > t) over t = 0 .. largest duration - 1, exact
    when the largest duration is an event; the median is the first t with survival <= 1/2 (NaN if none)."""
    d = np.asarray(durations, float)
    e = np.asarray(observed, bool)
    keep = np.isfinite(d) & (d > 0)
    d, e = d[keep].astype(np.int64), e[keep]
    if not e.any():
        return np.nan, np.nan
    horizon = int(d.max())
    at_risk = len(d) - np.searchsorted(np.sort(d), np.arange(1, horizon + 1), side="left")
    deaths = np.bincount(d[e], minlength=horizon + 1)[1:]
    survival = np.cumprod(1.0 - deaths / np.maximum(at_risk, 1))
    mean = 1.0 + float(survival[:-1].sum())  # P(lag > 0) = 1, then P(lag > t) for t = 1 .. horizon - 1
    below = np.flatnonzero(survival <= 0.5)
    return mean, float(below[0] + 1) if len(below) else np.nan


def improvement_lag_summary(candidates, tensor_reads, params) -> pd.DataFrame:
    """The lag of each run against the geometric expectation p/s. `mean_lag` / `median_lag` are the
    Kaplan-Meier estimates over every new maximum that had a chance (`events`): `picked` ones are
    observed lags, the others are right-censored after `at_risk` creations (superseded by a newer best,
    retired, or the search ended), which a plain average of the picked ones would drop, biasing it low
    (`naive_mean_lag`, kept for comparison)."""
    events = improvement_lag(candidates, tensor_reads, params)
    events = events[events["available_at"].notna()]
    rows = []
    for run, ev in events.groupby("run", sort=False):
        chance = ev[ev["at_risk"] > 0]
        picked = chance[chance["observed"]]
        mean, median = kaplan_meier(chance["at_risk"], chance["observed"])
        rows.append({
            "run": run, "events": len(chance), "picked": len(picked), "censored": len(chance) - len(picked),
            "superseded": int(chance["superseded"].sum()), "mean_lag": mean, "median_lag": median,
            "naive_mean_lag": float(picked["lag"].astype(float).mean()) if len(picked) else np.nan,
            "expected_lag": float(ev["expected_lag"].iloc[0]),
            "mean_lag_seconds": float(picked["lag_seconds"].mean()) if len(picked) else np.nan,
        })
    cols = ["run", "events", "picked", "censored", "superseded", "mean_lag", "median_lag", "naive_mean_lag",
            "expected_lag", "mean_lag_seconds"]
    return pd.DataFrame(rows, columns=cols)


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
