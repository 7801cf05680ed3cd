"""Small vectorized primitives over the candidates frame, shared by the research-question modules.

Traces reach a million candidates, so nothing here loops over rows in Python: architecture sequences
are stacked once into a 2-D integer matrix and prefixes are encoded as sortable scalar keys."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..search.regevo import position_weights

PAD = -1  # arch_matrix filler where a sequence is shorter than the longest one (runs of other spaces)


def is_ok(c: pd.DataFrame) -> pd.Series:
    """Row mask of the candidates that trained successfully (status "ok")."""
    return c["status"] == "ok"


def ok_candidates(c: pd.DataFrame) -> pd.DataFrame:
    """Candidates that trained successfully: only these have a quality and enter the population."""
    return c[is_ok(c)]


def inserted(c: pd.DataFrame) -> pd.DataFrame:
    """The successful candidates that entered the population, in insertion order (insert_seq)."""
    ok = ok_candidates(c)
    return ok[ok["insert_seq"].notna()].sort_values("insert_seq", kind="stable")


def factors(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """(an int64 code per row, the values by code): a categorical's own codes (tens of millions of reads
    as load_traces gives them, no hashing), else a factorization."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy().astype(np.int64), values.cat.categories
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64), pd.Index(uniques)


def tensor_factors(reads: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    return factors(reads["tensor_id"])


def tensor_codes(reads: pd.DataFrame) -> np.ndarray:
    return tensor_factors(reads)[0]


def population_members(c: pd.DataFrame, run: str, version: int, p: int) -> pd.DataFrame:
    """The population of `run` at population_version `version`: Algorithm 1 inserts every evaluated
    candidate and drops the oldest, so the members are the last p insertions, insert_seq in [version-p, version)."""
    seq = c["insert_seq"]
    return c[(c["run"] == run) & (seq >= version - p) & (seq < version)]


def population_window(seq: np.ndarray, version: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """population_members for many versions at once, as positions in the sorted insert_seq array `seq`:
    the members at version v are seq[start:stop], insert_seq in [v-p, v)."""
    return np.searchsorted(seq, version - p, side="left"), np.searchsorted(seq, version, side="left")


def concat_runs(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The per-run frames of a table stacked, in `columns` order; an empty table with those columns if none."""
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


# --- the runs' search parameters (params["runs"][run]) -------------------------------------------

def run_spec(params: dict, run: str) -> dict:
    """The search parameters of `run`, empty when params does not list it."""
    return params.get("runs", {}).get(run, {})


def population_size(params: dict, run: str) -> int:
    """p, the population size of `run` (required)."""
    return int(params["runs"][run]["population"])


def population_sample(params: dict, run: str) -> tuple[int, int]:
    """(p, s): population and sample size of `run` (both required)."""
    return population_size(params, run), int(params["runs"][run]["sample"])


def _mutation_positions(params: dict, run: str):
    return run_spec(params, run).get("mutation", {}).get("positions", "uniform")


def mutation_weights(params: dict, run: str, width: int) -> np.ndarray:
    """The probability that `run` mutates each of its `width` positions: the run's `mutation.positions`
    (uniform, linear or explicit weights, as the search drew them), uniform when params do not say."""
    try:
        return position_weights(_mutation_positions(params, run), width)
    except ValueError as err:
        raise ValueError(f"run {run!r}: {err}") from None


def mutation_label(params: dict, run: str) -> str:
    positions = _mutation_positions(params, run)
    return positions if isinstance(positions, str) else "weights " + "-".join(f"{w:g}" for w in positions)


def num_choices(params: dict, run: str, seqs: np.ndarray | pd.DataFrame) -> list[int]:
    """Per-position choice counts from the run parameters (runs.<run>.num_choices), else what the run's
    sequences show (largest choice + 1 at each position); `seqs` is their arch_matrix, or the run's
    candidates, whose matrix is then built only when the parameters do not declare the counts."""
    declared = run_spec(params, run).get("num_choices")
    if declared:
        return [int(c) for c in declared]
    if isinstance(seqs, pd.DataFrame):
        seqs = arch_matrix(seqs)
    return [int(c) + 1 for c in seqs.max(axis=0)] if seqs.size else []


def arch_matrix(c: pd.DataFrame | pd.Series) -> np.ndarray:
    """arch_seq as a (rows, L) int64 matrix, so that positions and prefixes are column slices.
    Sequences have one length within a run; across runs of different spaces the shorter ones are padded
    with PAD (-1), which keeps a shorter sequence lexicographically before its extensions."""
    seqs = c["arch_seq"] if isinstance(c, pd.DataFrame) else c
    n = len(seqs)
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    if isinstance(seqs.dtype, pd.ArrowDtype):
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pa.array(seqs.array)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        items = seqs.to_numpy(dtype=object)
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
        flat = np.concatenate(items).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    width = int(lengths.max())
    if (lengths == width).all():
        return flat.reshape(n, width)
    out = np.full((n, width), PAD, dtype=np.int64)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = flat
    return out


def prefix_keys(arch_seqs: pd.Series | np.ndarray, length: int) -> pd.Series:
    """One hashable, sortable key per row for the first `length` choices of its architecture sequence, so
    that prefix popularity is a plain groupby/value_counts. Keys order like the prefixes (lexicographic).
    They are int64 (mixed radix) when the prefix fits in 63 bits, else fixed-width bytes; keys from
    different calls are only comparable when built with the same `length` from the same values."""
    m = arch_seqs if isinstance(arch_seqs, np.ndarray) else arch_matrix(arch_seqs)
    index = arch_seqs.index if isinstance(arch_seqs, pd.Series) else None
    digits = m[:, :length] - PAD  # >= 0; PAD becomes 0, before every real choice
    if digits.shape[1] == 0:
        return pd.Series(np.zeros(len(m), np.int64), index=index)
    base = int(digits.max()) + 1 if digits.size else 1
    if digits.shape[1] * np.log2(max(base, 2)) < 63:
        weights = base ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64)
        return pd.Series(digits @ weights, index=index)
    raw = np.ascontiguousarray(digits.astype(">u4")).view(f"S{4 * digits.shape[1]}").ravel()
    return pd.Series(raw.astype(object), index=index)


def prefix_ids(keys: pd.Series) -> pd.Series:
    """Prefix id = rank of the prefix in lexicographic order (0, 1, ...), as on the x-axis of Fig. 4:
    ids are stable for a given set of keys, so compute them once over every snapshot of a row."""
    codes, _ = pd.factorize(keys, sort=True)
    return pd.Series(codes.astype(np.int64), index=keys.index if isinstance(keys, pd.Series) else None)


def seq_label(seq) -> str:
    """The paper's notation for a (prefix of an) architecture sequence: '0-1-1-2-1-2'."""
    return "-".join(str(int(x)) for x in seq if x != PAD)
