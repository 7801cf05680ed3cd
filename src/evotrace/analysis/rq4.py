"""RQ4 (Section V-C, Fig. 3): model quality over the search. High performers show as the stepwise
cumulative maximum; low performers stay hidden by the usual figures, yet regularized evolution never
picks the s-1 worst of a sample as parent, which bounds whether a new model is worth storing for
transfer. The population after insertion k is the members with insert_seq in (k-p, k] (Algorithm 1:
discard the oldest, append the new one); a parent was drawn from insert_seq in [v-p, v), v being the
child's population_version."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .common import concat_runs, inserted, ok_candidates, population_sample, population_window

TRIM_QUANTILE = 0.5  # the trimmed Fig. 3 axis starts at this quantile of the run's observed quality
_CHUNK_CELLS = 1 << 22


def window_count_le(values: np.ndarray, start: np.ndarray, stop: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """For each i, how many values[j] with start[i] <= j < stop[i] are <= threshold[i]. Vectorized
    over a (rows x widest window) block, in chunks that bound the memory."""
    out = np.zeros(len(start), dtype=np.int64)
    if not len(start) or not len(values):
        return out
    width = int(max((stop - start).max(), 1))
    offsets = np.arange(width)
    step = max(1, _CHUNK_CELLS // width)
    for lo in range(0, len(start), step):
        hi = min(lo + step, len(start))
        idx = start[lo:hi, None] + offsets
        inside = idx < stop[lo:hi, None]
        picked = values[np.clip(idx, 0, len(values) - 1)]
        out[lo:hi] = (inside & (picked <= threshold[lo:hi, None])).sum(axis=1)
    return out


def transfer_bound(population: np.ndarray, rank: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """p(X = 0 | X ~ H(P, P - lambda, s)): the chance that a sample of s members holds none of the
    P - lambda better ones, an upper bound on the model becoming a parent at one draw. With fewer
    members than s (population not yet full) the sample is the whole population."""
    population = np.asarray(population, dtype=np.int64)
    draws = np.minimum(np.asarray(sample, dtype=np.int64), population)
    return stats.hypergeom.pmf(0, population, population - np.asarray(rank, dtype=np.int64), draws)


def _ok(candidates: pd.DataFrame) -> pd.DataFrame:
    ok = ok_candidates(candidates)
    return ok[ok["quality"].notna()]


def _members(group: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The run's inserted candidates with a quality, in insertion order: the rows, insert_seq and quality."""
    ok = _ok(inserted(group))
    return ok, ok["insert_seq"].to_numpy(dtype=np.int64), ok["quality"].to_numpy(dtype=np.float64)


def quality(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Every successful candidate in completion order with the cumulative maximum (Fig. 3).
    `completion` counts all finished candidates, failed ones included (the paper's time step);
    `improvement` marks a strictly new maximum."""
    frames = []
    for run, group in candidates.groupby("run", sort=True):
        group = group.sort_values(["end_time", "job_id"], kind="stable")
        group = group.assign(completion=np.arange(1, len(group) + 1))
        ok = _ok(group)
        q = ok["quality"].to_numpy(dtype=np.float64)
        best = np.maximum.accumulate(q) if len(q) else q
        before = np.r_[-np.inf, best[:-1]] if len(q) else q
        frames.append(pd.DataFrame({
            "run": str(run), "job_id": ok["job_id"].to_numpy(), "stage": ok["stage"].to_numpy(),
            "end_time": ok["end_time"].to_numpy(), "completion": ok["completion"].to_numpy(),
            "quality": q, "cummax": best, "improvement": q > before,
        }))
    columns = ["run", "job_id", "stage", "end_time", "completion", "quality", "cummax", "improvement"]
    return concat_runs(frames, columns)


def improvements(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Each step of the cumulative maximum: when, which candidate, its quality and the gain over
    the previous maximum (empty for the first). Shrinking gains are the diminishing returns."""
    steps = quality(candidates, tensor_reads, params)
    steps = steps[steps["improvement"].astype(bool)].copy()
    steps["step"] = steps.groupby("run").cumcount() + 1
    steps["gain"] = steps.groupby("run")["quality"].diff()
    return steps[["run", "step", "job_id", "stage", "end_time", "completion", "quality", "gain"]].reset_index(drop=True)


def quality_summary(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Per run: counts, quality range, how many distinct qualities (few means ties in most tournaments),
    the improvements of the maximum in end-time order (as `improvements`), the lower edge of the trimmed Fig. 3 axis (`trim_low`, the
    TRIM_QUANTILE quantile, or analysis.quality_trim_quantile when set) and how many successful
    candidates that trimmed axis hides."""
    quantile = float(params.get("analysis", {}).get("quality_trim_quantile", TRIM_QUANTILE))
    steps = quality(candidates, tensor_reads, params).groupby("run")["improvement"].sum()
    rows = []
    for run, group in candidates.groupby("run", sort=True):
        q = _ok(group)["quality"].to_numpy(dtype=np.float64)
        low = float(np.quantile(q, quantile)) if len(q) else np.nan
        rows.append({
            "run": str(run), "candidates": len(group), "ok": len(q), "failed": len(group) - len(q),
            "min": float(q.min()) if len(q) else np.nan, "median": float(np.median(q)) if len(q) else np.nan,
            "max": float(q.max()) if len(q) else np.nan, "trim_quantile": quantile, "trim_low": low,
            "hidden": int((q < low).sum()), "improvements": int(steps.get(str(run), 0)),
            "distinct_qualities": len(np.unique(q)),
        })
    columns = ["run", "candidates", "ok", "failed", "min", "median", "max", "trim_quantile", "trim_low",
               "hidden", "improvements", "distinct_qualities"]
    return pd.DataFrame(rows, columns=columns)


def _uses(group: pd.DataFrame, column: str) -> pd.Series:
    ids = pd.to_numeric(group[column], errors="coerce").dropna().astype(np.int64)
    return ids.value_counts()


def insertion_rank(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """For each inserted candidate: its rank lambda in the population just after its insertion
    (1 = worst; ties count as not better, so P - lambda is the number of strictly better members),
    P the members present then (p once stage 1 is done), the bound p(X=0 | H(P, P-lambda, s)), and
    whether it ever became a parent or a donor (how many children and transfers it gave)."""
    frames = []
    for run, group in candidates.groupby("run", sort=True):
        p, s = population_sample(params, str(run))
        ok, seq, q = _members(group)
        start, stop = population_window(seq, seq + 1, p)  # just after insertion k: the members at version k + 1
        rank = window_count_le(q, start, stop, q)
        population = stop - start
        children, donations = _uses(group, "parent_id"), _uses(group, "donor_id")
        job = ok["job_id"].to_numpy(dtype=np.int64)
        n_children = children.reindex(job, fill_value=0).to_numpy()
        n_donations = donations.reindex(job, fill_value=0).to_numpy()
        frames.append(pd.DataFrame({
            "run": str(run), "job_id": job, "stage": ok["stage"].to_numpy(), "insert_seq": seq,
            "end_time": ok["end_time"].to_numpy(), "quality": q, "population": population, "rank": rank,
            "sample": s, "transfer_bound": transfer_bound(population, rank, np.full(len(seq), s)),
            "children": n_children, "donations": n_donations,
            "was_parent": n_children > 0, "was_donor": n_donations > 0,
        }))
    columns = ["run", "job_id", "stage", "insert_seq", "end_time", "quality", "population", "rank", "sample",
               "transfer_bound", "children", "donations", "was_parent", "was_donor"]
    return concat_runs(frames, columns)


def rank_outcomes(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Per run and rank lambda at insertion into a full population (P = p): how many candidates,
    which share ever became parents or donors, and the one-draw bound p(X=0 | H(p, p-lambda, s)).
    A candidate stays up to p insertions in the population, so the observed share may exceed the
    one-draw bound; ranks below s must stay at zero parents."""
    ranks = insertion_rank(candidates, tensor_reads, params)
    rows = []
    for run, group in ranks.groupby("run", sort=True):
        p, s = population_sample(params, str(run))
        full = group[group["population"] == p]
        table = full.groupby("rank").agg(candidates=("job_id", "size"), parents=("was_parent", "sum"),
                                         donors=("was_donor", "sum")).reindex(np.arange(1, p + 1), fill_value=0)
        table["parent_fraction"] = (table["parents"] / table["candidates"].where(table["candidates"] > 0)).astype(float)
        table["donor_fraction"] = (table["donors"] / table["candidates"].where(table["candidates"] > 0)).astype(float)
        table["transfer_bound"] = transfer_bound(np.full(p, p), np.arange(1, p + 1), np.full(p, s))
        table = table.rename_axis("rank").reset_index()
        table.insert(0, "run", str(run))
        rows.append(table)
    columns = ["run", "rank", "candidates", "parents", "parent_fraction", "donors", "donor_fraction", "transfer_bound"]
    return concat_runs(rows, columns)


def worst_parents(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Checks the claim that the s-1 worst never become parents. At each draw (a stage-2 child with
    population_version v) the parent's rank among the members with insert_seq in [v-p, v) must be at
    least s, since it beat s-1 others of its sample: `worst_draws` / `worst_draw_fraction` count draws
    whose parent ranked below s (0 for a correct Algorithm 1) and `parent_outside` parents that were not
    members at all (0 too). Since members retire, a candidate among the s-1 worst at its insertion can
    still climb and become a parent later: `inserted_worst*` measure that for the candidates inserted
    into a full population with rank below s."""
    ranks = insertion_rank(candidates, tensor_reads, params)
    rows = []
    for run, group in candidates.groupby("run", sort=True):
        p, s = population_sample(params, str(run))
        ok, seq, q = _members(group)
        child = group[group["parent_id"].notna()]
        parent = pd.to_numeric(child["parent_id"]).astype(np.int64).to_numpy()
        version = pd.to_numeric(child["population_version"]).astype(np.int64).to_numpy()
        member = pd.Series(np.arange(len(seq)), index=ok["job_id"].to_numpy(dtype=np.int64))
        where = member.reindex(parent).to_numpy()
        known = ~np.isnan(where)
        at = where[known].astype(np.int64)
        v = version[known]
        start, stop = population_window(seq, v, p)
        inside = (seq[at] >= v - p) & (seq[at] < v)
        rank = window_count_le(q, start, stop, q[at])
        worst = inside & (rank <= s - 1)
        draws = len(parent)
        mine = ranks[ranks["run"] == str(run)]
        inserted = mine[(mine["population"] == p) & (mine["rank"] <= s - 1)]
        rows.append({
            "run": str(run), "population": p, "sample": s, "draws": draws,
            "parent_outside": int((~known).sum() + (~inside).sum()),
            "worst_draws": int(worst.sum()), "worst_draw_fraction": worst.sum() / draws if draws else np.nan,
            "inserted_worst": len(inserted), "inserted_worst_parents": int(inserted["was_parent"].sum()),
            "inserted_worst_parent_fraction": inserted["was_parent"].mean() if len(inserted) else np.nan,
            "inserted_worst_donors": int(inserted["was_donor"].sum()),
            "inserted_worst_donor_fraction": inserted["was_donor"].mean() if len(inserted) else np.nan,
        })
    columns = ["run", "population", "sample", "draws", "parent_outside", "worst_draws", "worst_draw_fraction",
               "inserted_worst", "inserted_worst_parents", "inserted_worst_parent_fraction",
               "inserted_worst_donors", "inserted_worst_donor_fraction"]
    return pd.DataFrame(rows, columns=columns)


def skip_store_cost(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """What skip-store's rule would cost transfer learning. The hypergeometric bound limits becoming a
    parent; a donor is any stored model with the longest common prefix, so a model that can never be a
    parent (inserted into a full population among the s-1 worst: bound 0) can still be a donor. Per run:
    the transfers (`transfers`), those whose donor was such a model (`from_worst`), their mean prefix
    length as traced and the longest prefix left among the stored models of that moment (insert_seq
    below the child's population_version) once those models are left out, found with the search's own
    PrefixIndex; `positions_lost` sums the difference and `shortened` counts the transfers it shortens."""
    from ..transfer import PrefixIndex
    from .common import arch_matrix

    ranks = insertion_rank(candidates, tensor_reads, params)
    rows = []
    for run, group in candidates.groupby("run", sort=True):
        p, s = population_sample(params, str(run))
        mine = ranks[ranks["run"] == str(run)]
        worst = set(mine.loc[(mine["population"] == p) & (mine["rank"] <= s - 1), "job_id"].astype(np.int64))
        children = group[group["donor_id"].notna()]
        donor = pd.to_numeric(children["donor_id"]).astype(np.int64)
        hit = children[donor.isin(worst).to_numpy()].sort_values("population_version", kind="stable")
        ok, seq, q = _members(group)
        stored = ok["stored"].fillna(True).to_numpy(bool) if "stored" in ok else np.ones(len(ok), bool)
        keep = stored & ~ok["job_id"].isin(worst).to_numpy()
        models, model_seq, model_q = ok["job_id"].to_numpy(np.int64)[keep], seq[keep], q[keep]
        model_arch = arch_matrix(ok[keep]) if len(hit) and keep.any() else np.zeros((0, 0), np.int64)
        child_arch = arch_matrix(hit) if len(hit) else np.zeros((0, 0), np.int64)
        index, added, alternative = PrefixIndex(), 0, []
        for version, arch in zip(pd.to_numeric(hit["population_version"]).astype(np.int64), child_arch):
            while added < len(models) and model_seq[added] < version:
                index.add(int(models[added]), [int(x) for x in model_arch[added]], float(model_q[added]))
                added += 1
            found = index.best([int(x) for x in arch])
            alternative.append(found[1] if found else 0)
        traced = pd.to_numeric(hit["prefix_len"]).fillna(0).to_numpy(np.int64)
        alternative = np.minimum(np.asarray(alternative, np.int64), traced)
        rows.append({
            "run": str(run), "population": p, "sample": s, "worst_models": len(worst),
            "worst_donors": int(hit["donor_id"].nunique()), "transfers": len(children), "from_worst": len(hit),
            "from_worst_fraction": len(hit) / len(children) if len(children) else np.nan,
            "mean_prefix_len": float(traced.mean()) if len(hit) else np.nan,
            "mean_prefix_len_without_worst": float(alternative.mean()) if len(hit) else np.nan,
            "positions_lost": int((traced - alternative).sum()), "shortened": int((alternative < traced).sum()),
        })
    columns = ["run", "population", "sample", "worst_models", "worst_donors", "transfers", "from_worst",
               "from_worst_fraction", "mean_prefix_len", "mean_prefix_len_without_worst", "positions_lost", "shortened"]
    return pd.DataFrame(rows, columns=columns)


TABLES = {
    "quality": quality,
    "improvements": improvements,
    "quality_summary": quality_summary,
    "insertion_rank": insertion_rank,
    "rank_outcomes": rank_outcomes,
    "worst_parents": worst_parents,
    "skip_store_cost": skip_store_cost,
}
