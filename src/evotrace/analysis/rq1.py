"""RQ1 (Section V-A, Fig. 1): how the architecture sequences evolve structurally. Where mutations fall
in the sequence bounds how much of a parent a child can inherit by transfer: every position after the
mutation must be retrained. Every table is computed per run, on vectorized sequence matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .common import arch_matrix, concat_runs, mutation_label, mutation_weights, num_choices, run_spec


def _is_transfer_run(params: dict, run: str, group: pd.DataFrame) -> bool:
    flag = run_spec(params, run).get("transfer")
    return bool(flag) if flag is not None else bool(group["donor_id"].notna().any())


def _covered_depth(group: pd.DataFrame) -> np.ndarray:
    """How many leading positions each candidate received from its donor (0 without a donor)."""
    prefix = pd.to_numeric(group["prefix_len"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    return np.where(group["donor_id"].notna().to_numpy(), prefix, 0)


def _run_trie(run: str, seqs: np.ndarray, covered: np.ndarray, min_fraction: float) -> pd.DataFrame:
    """Level by level: each row's prefix is identified by (node of its shorter prefix, choice), so
    codes stay below n * choices at every depth; rows whose prefix is pruned drop out for good, since
    a longer prefix can never be more frequent than a shorter one."""
    n, width = seqs.shape
    threshold = min_fraction * n
    nodes = {"node": [0], "parent_node": [-1], "depth": [0], "choice": [-1], "prefix": [""],
             "candidates": [n], "transfers": [int((covered > 0).sum())]}
    prefixes = [""]
    rows = np.arange(n)
    row_node = np.zeros(n, dtype=np.int64)
    radix = int(seqs.max()) + 1 if seqs.size else 1
    for depth in range(1, width + 1):
        choice = seqs[rows, depth - 1]
        present = choice >= 0
        rows, choice, parent = rows[present], choice[present], row_node[present]
        if not len(rows):
            break
        codes, uniques = pd.factorize(parent * radix + choice, sort=True)
        counts = np.bincount(codes)
        transfers = np.bincount(codes, weights=(covered[rows] >= depth).astype(np.float64))
        kept = np.flatnonzero(counts >= threshold)
        if not len(kept):
            break
        new_id = np.full(len(uniques), -1, dtype=np.int64)
        new_id[kept] = np.arange(len(prefixes), len(prefixes) + len(kept))
        for k in kept:
            up, c = divmod(int(uniques[k]), radix)
            label = f"{prefixes[up]}-{c}" if up else str(c)
            prefixes.append(label)
            for key, value in (("node", int(new_id[k])), ("parent_node", up), ("depth", depth), ("choice", c),
                               ("prefix", label), ("candidates", int(counts[k])),
                               ("transfers", int(round(transfers[k])))):
                nodes[key].append(value)
        row_node = new_id[codes]
        rows, row_node = rows[row_node >= 0], row_node[row_node >= 0]
    frame = pd.DataFrame(nodes)
    frame.insert(0, "run", run)
    frame["fraction"] = frame["candidates"] / n if n else 0.0
    total = frame["transfers"].iloc[0]
    frame["transfer_fraction"] = frame["transfers"] / total if total else 0.0
    return frame


def trie(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Fig. 1: the prefix trie of every run's architecture sequences, pruned below
    `analysis.trie.min_fraction` of the run's candidates (failed ones included: they were visited).
    `node`/`parent_node` are integers per run (root 0, parent -1); `fraction` is the share of
    candidates with that prefix; `transfers` counts the candidates whose donor transfer covered the
    prefix (a donor and prefix_len >= depth), `transfer_fraction` relative to the run's transfers."""
    min_fraction = float(params["analysis"]["trie"]["min_fraction"])
    frames = []
    for run, group in candidates.groupby("run", sort=True):
        seqs = arch_matrix(group)
        frames.append(_run_trie(str(run), seqs, _covered_depth(group), min_fraction))
    columns = ["run", "node", "parent_node", "depth", "choice", "prefix", "candidates", "fraction",
               "transfers", "transfer_fraction"]
    return concat_runs(frames, columns)


def choice_frequency(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """How often each choice appears at each position, over all candidates and per stage. Stage 1
    samples uniformly, so a skew that appears in stage 2 is the selection pressure of the sample;
    `uniform` is 1 / (choices at that position)."""
    frames = []
    for run, group in candidates.groupby("run", sort=True):
        seqs = arch_matrix(group)
        choices = num_choices(params, str(run), seqs)
        width = len(choices)
        radix = max(max(choices, default=1), int(seqs.max()) + 1 if seqs.size else 1)
        stage = group["stage"].to_numpy()
        columns = min(width, seqs.shape[1])
        bins = np.where(seqs[:, :columns] >= 0, seqs[:, :columns] + radix * np.arange(columns), width * radix)

        def counts(rows):
            flat = np.bincount(bins[rows].ravel(), minlength=width * radix + 1)
            return flat[: width * radix].reshape(width, radix)

        first, second = counts(stage == 1), counts(stage == 2)
        every = first + second + counts((stage != 1) & (stage != 2))
        position, choice = np.meshgrid(np.arange(width), np.arange(radix), indexing="ij")
        frame = pd.DataFrame({
            "position": position.ravel(), "choice": choice.ravel(), "candidates": every.ravel(),
            "stage1": first.ravel(), "stage2": second.ravel(),
        })
        frame = frame[frame["choice"].to_numpy() < np.asarray(choices)[frame["position"].to_numpy()]]
        for col, source in (("fraction", "candidates"), ("stage1_fraction", "stage1"), ("stage2_fraction", "stage2")):
            total = frame.groupby("position")[source].transform("sum")
            frame[col] = (frame[source] / total.where(total > 0)).fillna(0.0)
        frame["uniform"] = 1.0 / np.asarray(choices)[frame["position"].to_numpy()]
        frame.insert(0, "run", str(run))
        frames.append(frame)
    columns = ["run", "position", "choice", "candidates", "fraction", "stage1", "stage1_fraction",
               "stage2", "stage2_fraction", "uniform"]
    return concat_runs(frames, columns)


def _positions(params: dict, run: str, group: pd.DataFrame) -> int:
    """L, the number of positions of the run's sequences."""
    declared = run_spec(params, run).get("num_choices")
    return len(declared) if declared else arch_matrix(group).shape[1]


def mutation_positions(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Histogram of the mutated position over the stage-2 candidates (failed ones included: the
    mutation happened before training), against the count the run's mutation weights predict (uniform
    unless `search.mutation.positions` biased them)."""
    frames = []
    for run, group in candidates.groupby("run", sort=True):
        width = _positions(params, str(run), group)
        weights = mutation_weights(params, str(run), width) if width else np.zeros(0)
        pos = pd.to_numeric(group["mutation_pos"], errors="coerce").dropna().to_numpy(dtype=np.int64)
        counts = np.bincount(pos[(pos >= 0) & (pos < width)], minlength=width)[:width]
        total = int(counts.sum())
        frames.append(pd.DataFrame({
            "run": str(run), "position": np.arange(width), "mutations": counts,
            "fraction": counts / total if total else 0.0,
            "expected": total * weights, "expected_fraction": weights,
        }))
    columns = ["run", "position", "mutations", "fraction", "expected", "expected_fraction"]
    return concat_runs(frames, columns)


def mutation_uniformity(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Pearson chi-square test of the mutation-position histogram against the run's mutation weights
    (scipy.stats.chisquare; expected count mutations x weight at each position of non-zero weight, one
    degree of freedom fewer than those positions; `weights` names them: uniform, linear or the list). A
    small p-value says the search does not mutate as configured. A mutation at a position of weight 0
    makes chisq infinite and p 0."""
    hist = mutation_positions(candidates, tensor_reads, params)
    rows = []
    for run, group in hist.groupby("run", sort=True):
        observed = group["mutations"].to_numpy(dtype=np.float64)
        expected = group["expected"].to_numpy(dtype=np.float64)
        total, live = int(observed.sum()), expected > 0
        if (observed[~live] > 0).any():
            chisq, p_value = np.inf, 0.0
        elif total and live.sum() > 1:
            chisq, p_value = stats.chisquare(observed[live], expected[live])
        else:
            chisq, p_value = np.nan, np.nan
        rows.append({"run": run, "weights": mutation_label(params, str(run)), "mutations": total,
                     "positions": len(observed), "chisq": float(chisq), "dof": int(live.sum()) - 1,
                     "p_value": float(p_value)})
    return pd.DataFrame(rows, columns=["run", "weights", "mutations", "positions", "chisq", "dof", "p_value"])


def _transfer_stage2(candidates: pd.DataFrame, params: dict):
    for run, group in candidates.groupby("run", sort=True):
        if not _is_transfer_run(params, str(run), group):
            continue
        width = _positions(params, str(run), group)
        child = group[group["stage"].to_numpy() == 2]
        yield str(run), width, child, _covered_depth(child)


def prefix_length(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Distribution of the transferred prefix length over the stage-2 candidates of transfer runs
    (no donor counts as 0), against what the mutation alone gives. Derivation: with L positions and the
    mutated position m drawn with the run's weights w (uniform: 1/L), the mutated value differing from the
    parent's, the child shares exactly the first m positions with its parent, so P(prefix = m) = w_m for
    m < L and 0 for m = L; uniform, the mean is (L-1)/2, less than half the sequence. The donor is the
    stored model with the longest common prefix, so when the parent is stored the observed prefix is at
    least m: mass shifted to the right of the expectation shows donors other than the parent."""
    frames = []
    for run, width, child, covered in _transfer_stage2(candidates, params):
        counts = np.bincount(np.clip(covered, 0, width), minlength=width + 1)[: width + 1]
        total = int(counts.sum())
        expected_fraction = np.r_[mutation_weights(params, run, width), 0.0] if width else np.zeros(1)
        frames.append(pd.DataFrame({
            "run": run, "prefix_len": np.arange(width + 1), "candidates": counts,
            "fraction": counts / total if total else 0.0,
            "expected": expected_fraction * total, "expected_fraction": expected_fraction,
        }))
    columns = ["run", "prefix_len", "candidates", "fraction", "expected", "expected_fraction"]
    return concat_runs(frames, columns)


def transfer_summary(candidates: pd.DataFrame, tensor_reads: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Per transfer run: stage-2 candidates, those with a donor, the mean transferred prefix against
    the mean mutated position (the prefix shared with the parent) and against the mean mutated position
    the run's weights give (uniform: (L-1)/2), and the mean share of the sequence transferred against
    that mean over L."""
    rows = []
    for run, width, child, covered in _transfer_stage2(candidates, params):
        mutated = pd.to_numeric(child["mutation_pos"], errors="coerce")
        expected = float(np.arange(width) @ mutation_weights(params, run, width)) if width else np.nan
        rows.append({
            "run": run, "candidates": len(child), "transfers": int(child["donor_id"].notna().sum()),
            "positions": width, "mean_prefix_len": float(covered.mean()) if len(covered) else np.nan,
            "mean_mutation_pos": float(mutated.mean()) if mutated.notna().any() else np.nan,
            "expected_mean_prefix_len": expected,
            "mean_transferred_fraction": float(covered.mean()) / width if len(covered) and width else np.nan,
            "expected_transferred_fraction": expected / width if width else np.nan,
        })
    columns = ["run", "candidates", "transfers", "positions", "mean_prefix_len", "mean_mutation_pos",
               "expected_mean_prefix_len", "mean_transferred_fraction", "expected_transferred_fraction"]
    return pd.DataFrame(rows, columns=columns)


TABLES = {
    "trie": trie,
    "choice_frequency": choice_frequency,
    "mutation_positions": mutation_positions,
    "mutation_uniformity": mutation_uniformity,
    "prefix_length": prefix_length,
    "transfer_summary": transfer_summary,
}
