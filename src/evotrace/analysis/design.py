"""RQ5 design experiments (the study's future work): runs that differ in one knob, replicated over
seeds, compared by medians with bootstrap intervals (analysis.stats).

A variant is a run of the study config before its `seeds` were expanded (config.variant_of); the study's
`analysis.design.comparisons` names, per kind of design choice, groups of variants with a baseline:

  cache       worker cache policy none / lru / popularity, in situ: bytes read from the repository,
              transfer seconds, traced hit rate, and the hit rate the replay predicts for those reads;
  quanta      scheduling quanta q: worker idle fraction, idle per dispatch against the RQ2 bound, time
              to quality, best quality (determinism: design_determinism);
  mutation    mutation position bias: mean transferred prefix, training time, time to quality, quality;
  skip_store  skip-store off / on at thresholds: bytes written, candidates whose best donor was not
              stored, prefix positions lost, quality;
  transfer    transfer learning on / off: time to quality, training time, quality.

Metrics are computed per run (design_runs, long format) from the traces alone; times are on the run's
own clock (virtual seconds for a simulated run)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import variant_of
from .common import arch_matrix, concat_runs, is_ok, mutation_label, prefix_keys, run_spec
from .stats import differences, medians

KINDS = {
    "cache": ["bytes_read", "transfer_seconds", "hit_rate", "predicted_hit_rate", "best_quality"],
    "quanta": ["idle_fraction", "mean_idle_seconds", "bound_wait_seconds", "time_to_quality", "best_quality"],
    "mutation": ["mean_prefix_len", "mean_train_seconds", "time_to_quality", "best_quality"],
    "skip_store": ["bytes_written", "skipped_best_donor", "prefix_lost", "best_quality"],
    "transfer": ["time_to_quality", "mean_train_seconds", "best_quality"],
}
HEADLINE = {"cache": "bytes_read", "quanta": "idle_fraction", "mutation": "mean_prefix_len",
            "skip_store": "bytes_written", "transfer": "time_to_quality"}
MIN_REPLICATES = 5  # fewer runs on either side: the bootstrap interval of a median is too narrow to trust
RUN_COLUMNS = ["run", "variant", "seed", "evaluation", "workers", "quanta", "mutation", "cache_policy", "skip_store",
               "transfer", "metric", "level", "value"]


def factors(params: dict, run: str) -> dict:
    """The design knobs of a run, as its trace metadata records them."""
    spec = run_spec(params, run)
    options = spec.get("transfer_options", {})
    skip = options.get("skip_store", {})
    transfer = bool(spec.get("transfer", True))
    return {"variant": variant_of(run), "seed": spec.get("seed"),
            "evaluation": spec.get("evaluation", {}).get("kind", "train"), "workers": spec.get("workers"),
            "quanta": int(spec.get("quanta", 1)),
            "mutation": mutation_label(params, run),
            "cache_policy": options.get("cache", {}).get("policy", "popularity") if transfer else "none",
            "skip_store": f"{skip.get('threshold', 0):g}" if skip.get("enabled") else "off", "transfer": transfer}


def time_to_quality(group: pd.DataFrame, level: float) -> float:
    """Seconds from the first start to the completion of the first candidate of quality >= level; NaN
    when the run never reached it."""
    ok = group[is_ok(group) & (group["quality"] >= level)]
    if ok.empty:
        return np.nan
    return float(ok["end_time"].min() - group["start_time"].min())


def idle_fraction(group: pd.DataFrame, workers: int) -> float:
    """Share of the W workers' time from the first start to the last end spent on no candidate."""
    c = group[group["start_time"].notna() & group["end_time"].notna()]
    span = float(c["end_time"].max() - c["start_time"].min()) if len(c) else 0.0
    if span <= 0 or not workers:
        return np.nan
    busy = float((c["end_time"] - c["start_time"]).clip(lower=0).sum())
    return max(0.0, 1.0 - busy / (workers * span))


def prefix_available(group: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate (rows of `group`): the longest common prefix it shares with any model inserted
    before it was created (insert_seq < its population_version), and with any such model that was
    stored. The difference is what skip-store cost it: its best donor was not stored."""
    ok = is_ok(group).to_numpy() & group["insert_seq"].notna().to_numpy()
    seq = group["insert_seq"].to_numpy(float)
    stored = ok & (group["stored"].fillna(False).to_numpy(bool) if "stored" in group else ok)
    version = group["population_version"].to_numpy(float)
    m = arch_matrix(group)
    every, kept = np.zeros(len(group), np.int64), np.zeros(len(group), np.int64)
    for length in range(1, m.shape[1] + 1):
        keys = prefix_keys(m, length).to_numpy()
        for mask, out in ((ok, every), (stored, kept)):
            first = pd.Series(np.where(mask, seq, np.inf)).groupby(keys).transform("min").to_numpy()
            out[first < version] = length
    return every, kept


def run_metrics(group: pd.DataFrame, reads: pd.DataFrame, spec: dict, levels: list[float], predicted: float
                ) -> list[tuple[str, float, float]]:
    """(metric, level, value) of one run; level is NaN except for time_to_quality."""
    from .rq2 import quanta_idle, quanta_wait, training_times

    ok = group[is_ok(group)]
    workers = int(spec.get("workers") or group["worker"].nunique())
    quanta = int(spec.get("quanta", 1))
    idle = quanta_idle(group, None, {"runs": {group["run"].iloc[0]: spec}})
    train_sd = float(training_times(group)["seconds"].std())
    every, kept = prefix_available(group)
    out = [
        ("best_quality", np.nan, float(ok["quality"].max()) if len(ok) else np.nan),
        ("idle_fraction", np.nan, idle_fraction(group, workers)),
        ("mean_idle_seconds", np.nan, float(idle["mean_idle_seconds"].iloc[0]) if len(idle) else np.nan),
        ("bound_wait_seconds", np.nan, float(quanta_wait(quanta, workers)) * train_sd if quanta <= workers else np.nan),
        ("mean_prefix_len", np.nan, float(ok["prefix_len"].fillna(0).mean()) if len(ok) else np.nan),
        ("mean_train_seconds", np.nan, float(ok["train_seconds"].mean()) if len(ok) else np.nan),
        ("bytes_read", np.nan, float(group["bytes_read"].fillna(0).sum())),
        ("transfer_seconds", np.nan, float(group["transfer_seconds"].fillna(0).sum())),
        ("hit_rate", np.nan, float(reads["cache_hit"].mean()) if len(reads) else np.nan),
        ("predicted_hit_rate", np.nan, predicted),
        ("bytes_written", np.nan, float(group["bytes_written"].fillna(0).sum())),
        ("skipped_best_donor", np.nan, float((every > kept).mean()) if len(group) else np.nan),
        ("prefix_lost", np.nan, float((every - kept).mean()) if len(group) else np.nan),
    ]
    out += [("time_to_quality", float(level), time_to_quality(group, level)) for level in levels]
    return out


def predicted_hit_rate(group: pd.DataFrame, reads: pd.DataFrame, spec: dict) -> float:
    """The hit rate the replay predicts for a run's own reads under its own cache policy and capacity
    (per worker): what the in-situ cache should have served."""
    from .rq5 import replay_caches

    options = spec.get("transfer_options", {})
    cache = options.get("cache", {})
    policy = cache.get("policy", "popularity") if spec.get("transfer", True) else "none"
    if reads.empty:
        return np.nan
    if policy == "none":
        return 0.0
    window = int(cache.get("window") or spec.get("population", 1))
    capacity = int(float(cache.get("capacity_mb", 64)) * 2**20)
    hits, _ = replay_caches(group, reads, "worker", policy, lambda total: capacity, int(cache.get("min_donations", 5)),
                            window, {}, 1)
    return hits / len(reads)


def design_runs(candidates, tensor_reads, params) -> pd.DataFrame:
    """One row per run x metric (x quality level for time_to_quality), with the run's design knobs."""
    design = params.get("analysis", {}).get("design", {})
    levels = [float(x) for x in design.get("quality_levels", [])]
    reads_of = dict(tuple(tensor_reads.groupby("run", sort=False))) if len(tensor_reads) else {}
    frames = []
    for run, group in candidates.groupby("run", sort=True):
        spec = run_spec(params, str(run))
        reads = reads_of.get(run, tensor_reads.iloc[:0])
        rows = run_metrics(group, reads, spec, levels, predicted_hit_rate(group, reads, spec))
        frame = pd.DataFrame(rows, columns=["metric", "level", "value"])
        for key, value in factors(params, str(run)).items():
            frame[key] = value
        frame["run"] = str(run)
        frames.append(frame)
    return concat_runs(frames, RUN_COLUMNS)


def comparison_groups(params: dict) -> list[dict]:
    """analysis.design.comparisons flattened: one dict per group (kind, group index, baseline, variants)."""
    design = params.get("analysis", {}).get("design", {})
    out = []
    for kind, groups in design.get("comparisons", {}).items():
        if kind not in KINDS:
            raise KeyError(f"analysis.design.comparisons: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        for i, group in enumerate(groups):
            out.append({"kind": kind, "group": i, "label": group.get("label", f"{kind} {i + 1}"),
                        "baseline": group["baseline"], "variants": list(group["variants"])})
    return out


def design_comparisons(candidates, tensor_reads, params) -> pd.DataFrame:
    """Per configured group, metric (and quality level) and variant: replicates, median and its 95 %
    interval, and the difference of medians from the baseline with its interval and verdict (the
    baseline's own row has no difference; with fewer than MIN_REPLICATES values on either side the verdict
    says so instead of judging). A variant with no run in the study is left out."""
    cols = ["kind", "group", "label", "metric", "level", "variant", "baseline", "replicates", "n", "median", "low",
            "high", "difference", "difference_low", "difference_high", "verdict"]
    groups = comparison_groups(params)
    if not groups:
        return pd.DataFrame(columns=cols)
    runs = design_runs(candidates, tensor_reads, params)
    runs["level"] = runs["level"].fillna(-1.0)  # a groupby key: no level
    frames = []
    for g in groups:
        wanted = [g["baseline"], *g["variants"]]
        sub = runs[runs["variant"].isin(wanted) & runs["metric"].isin(KINDS[g["kind"]])]
        if sub.empty or g["baseline"] not in set(sub["variant"]):
            continue
        replicates = sub.groupby("variant")["run"].nunique()
        for (metric, level), m in sub.groupby(["metric", "level"], sort=False):
            present = m[m["value"].notna()]
            if present.empty:
                continue
            med = medians(present, "value", ["variant"])
            med["replicates"] = med["variant"].map(replicates)
            if (present["variant"] == g["baseline"]).any() and present["variant"].nunique() > 1:
                diff = differences(present, "value", "variant", g["baseline"])
                few = (diff["n_baseline"] < MIN_REPLICATES) | (diff["n_variant"] < MIN_REPLICATES)
                diff["verdict"] = diff["verdict"].where(~few, f"too few seeds to judge (n < {MIN_REPLICATES})")
                med = med.merge(diff[["variant", "difference", "low", "high", "verdict"]].rename(
                    columns={"low": "difference_low", "high": "difference_high"}), on="variant", how="left")
            med["verdict"] = med.get("verdict", pd.Series(np.nan, index=med.index))
            med.loc[med["variant"] == g["baseline"], "verdict"] = "baseline"
            med = med.assign(kind=g["kind"], group=g["group"], label=g["label"], metric=metric,
                             level=np.nan if level == -1.0 else level, baseline=g["baseline"])
            med["order"] = med["variant"].map({v: i for i, v in enumerate(wanted)})
            frames.append(med.sort_values("order").reindex(columns=cols))
    return concat_runs(frames, cols)


def design_determinism(candidates, tensor_reads, params) -> pd.DataFrame:
    """How far two runs with the same knobs and seed diverge: the first job whose architecture differs
    (job ids count candidates in creation order), the share of identical architectures among the jobs
    both ran, and the difference of their best qualities. One row per such pair of runs."""
    cols = ["run", "other", "seed", "quanta", "workers", "evaluation", "jobs", "first_divergence",
            "identical_fraction", "best_quality_difference"]
    keys = ["seed", "evaluation", "workers", "quanta", "mutation", "cache_policy", "skip_store", "transfer"]
    runs = {str(r): g for r, g in candidates.groupby("run", sort=True)}
    known = pd.DataFrame([{"run": r, **factors(params, r)} for r in runs])
    if known.empty:
        return pd.DataFrame(columns=cols)
    specs = {r: run_spec(params, r) for r in runs}
    known["setup"] = [repr({k: v for k, v in specs[r].items() if k in ("space", "space_options", "candidates",
                                                                         "population", "sample", "epochs")})
                      for r in known["run"]]
    rows = []
    for _, same in known.groupby([*keys, "setup"], sort=True, dropna=False):
        names = list(same["run"])
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                x = runs[a].set_index("job_id")
                y = runs[b].set_index("job_id")
                jobs = x.index.intersection(y.index).sort_values()
                same_arch = np.array([np.array_equal(x.at[j, "arch_seq"], y.at[j, "arch_seq"]) for j in jobs], bool)
                differ = np.flatnonzero(~same_arch)
                f = same.iloc[0]
                rows.append({"run": a, "other": b, "seed": f["seed"], "quanta": f["quanta"], "workers": f["workers"],
                             "evaluation": f["evaluation"], "jobs": len(jobs),
                             "first_divergence": int(jobs[differ[0]]) if len(differ) else np.nan,
                             "identical_fraction": float(same_arch.mean()) if len(jobs) else np.nan,
                             "best_quality_difference": float(x["quality"].max() - y["quality"].max())})
    return pd.DataFrame(rows, columns=cols)
