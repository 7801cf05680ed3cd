"""A synthetic trace of one parallel regularized-evolution run with transfer learning, at any size, for
benchmarking the analyses: W asynchronous workers with lognormal training times, stage 1 = the first p
random candidates, stage 2 = one uniform mutation of the winner of a tournament of s population members,
quality from an additive per-choice model (so selection concentrates prefixes as in Fig. 4), the parent as
donor of the shared prefix, and ~6 tensor reads per transferred candidate with a worker-local cache.

    python bench/synthetic_trace.py --n 1000000 --out-dir /tmp/synth
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from evotrace.trace import CANDIDATES, TENSOR_READS, with_run_metadata

TENSORS_PER_POSITION = 2  # an edge operation: conv weight + batch-norm
STEM_TENSORS = 1
NBYTES_POSITION = np.array([2304, 64], dtype=np.int64)
NBYTES_STEM = 864


def _simulate_times(n, workers, rng):
    """Each worker trains back to back; job_id follows submission order across workers."""
    per = n // workers + 2
    train = rng.lognormal(np.log(30.0), 0.5, size=(workers, per))
    overhead = 0.05 + rng.exponential(0.02, size=(workers, per))
    busy = train + overhead
    submit = np.cumsum(busy, axis=1) - busy + (np.arange(workers) * 1e-3)[:, None]
    worker = np.broadcast_to(np.arange(1, workers + 1, dtype=np.int32)[:, None], submit.shape)
    order = np.argsort(submit, axis=None, kind="stable")[:n]
    submit, worker, train = submit.ravel()[order], worker.ravel()[order], train.ravel()[order]
    start = submit + 0.005
    return submit, start, start + train, worker, train


def generate(n=1_000_000, workers=64, population=100, sample=5, positions=6, choices=5, seed=0, run="synthetic",
             failure_rate=0.005):
    rng = np.random.default_rng(seed)
    L, K, p, s = positions, choices, population, sample
    submit, start, end, worker, train = _simulate_times(n, workers, rng)
    failed = rng.random(n) < failure_rate
    failed[:2] = False
    ok_idx = np.flatnonzero(~failed)
    ins_order = ok_idx[np.lexsort((ok_idx, end[ok_idx]))]  # insertion order = completion order
    insert_seq = np.full(n, -1, dtype=np.int64)
    insert_seq[ins_order] = np.arange(len(ins_order))
    version = np.searchsorted(np.sort(end[ok_idx]), submit, side="right").astype(np.int64)

    stage2 = (np.arange(n) >= p) & (version > 0)
    rows2 = np.flatnonzero(stage2)
    lo = np.maximum(version[rows2] - p, 0)
    members = ins_order[lo[:, None] + (rng.random((len(rows2), s)) * (version[rows2] - lo)[:, None]).astype(np.int64)]
    member_max = np.full(n, -1, dtype=np.int64)
    member_max[rows2] = members.max(axis=1)
    member_row = np.full(n, -1, dtype=np.int64)
    member_row[rows2] = np.arange(len(rows2))

    weights = rng.normal(0.0, 1.0, size=(L, K))
    noise = rng.normal(0.0, 0.01, size=n)

    def quality_of(a, rows):
        score = weights[np.arange(L), a].sum(axis=1)
        return np.clip(0.10 + 0.84 / (1.0 + np.exp(-(0.8 * score + 1.0))) + noise[rows], 0.05, 0.95)

    arch = np.empty((n, L), dtype=np.int64)
    quality = np.empty(n)
    parent = np.full(n, -1, dtype=np.int64)
    mut_pos = np.full(n, -1, dtype=np.int64)
    owner = np.empty((n, L + 1), dtype=np.int64)  # column 0: stem, then one per position

    first = np.flatnonzero(~stage2)
    arch[first] = rng.integers(0, K, size=(len(first), L))
    quality[first] = quality_of(arch[first], first)
    owner[first] = first[:, None]
    pos_draw = rng.integers(0, L, size=n)
    delta = rng.integers(1, K, size=n)
    cols = np.arange(L + 1)

    b, n2 = 0, len(rows2)
    while b < n2:
        # a block of stage-2 rows whose tournament members are all resolved already
        cap = min(n2, b + 4096)
        block_rows = rows2[b:cap]
        unresolved = member_max[block_rows] >= block_rows[0]
        e = b + (int(np.argmax(unresolved)) if unresolved.any() else cap - b)
        e = max(e, b + 1)
        rows = rows2[b:e]
        m = members[member_row[rows]]
        par = m[np.arange(len(rows)), np.argmax(quality[m], axis=1)]
        pos = pos_draw[rows]
        a = arch[par].copy()
        a[np.arange(len(rows)), pos] = (a[np.arange(len(rows)), pos] + delta[rows]) % K
        arch[rows], parent[rows], mut_pos[rows] = a, par, pos
        quality[rows] = quality_of(a, rows)
        owner[rows] = np.where(cols[None, :] <= pos[:, None], owner[par], rows[:, None])
        b = e

    quality[failed] = np.nan
    donor = parent.copy()
    prefix_len = np.where(parent >= 0, mut_pos, 0)
    has_donor = parent >= 0
    n_tensors = np.where(has_donor, STEM_TENSORS + TENSORS_PER_POSITION * prefix_len, 0)

    # tensor reads: stem, then both tensors of every transferred position, read at the start of training
    job = np.repeat(np.arange(n), n_tensors)
    k = np.arange(len(job)) - np.repeat(np.cumsum(n_tensors) - n_tensors, n_tensors)
    position = np.where(k < STEM_TENSORS, -1, (k - STEM_TENSORS) // TENSORS_PER_POSITION)
    kind = np.where(k < STEM_TENSORS, k, (k - STEM_TENSORS) % TENSORS_PER_POSITION)
    owner_id = owner[job, position + 1]
    nbytes = np.where(position < 0, NBYTES_STEM, NBYTES_POSITION[kind])
    read_worker = worker[job]
    key = (owner_id * (L + 2) + position + 1) * TENSORS_PER_POSITION + kind
    # an unbounded worker-local cache: a hit when this worker read the tensor before (stable sort keeps job order)
    order = np.lexsort((key, read_worker))
    sk, sw = key[order], read_worker[order]
    seen = np.zeros(len(job), dtype=bool)
    seen[order[1:]] = (sk[1:] == sk[:-1]) & (sw[1:] == sw[:-1])
    read_time = start[job] + 0.001 * k

    miss_bytes = np.bincount(job, weights=np.where(seen, 0, nbytes), minlength=n).astype(np.int64)
    hits = np.bincount(job, weights=seen, minlength=n).astype(np.int32)
    per_candidate = STEM_TENSORS * NBYTES_STEM + L * NBYTES_POSITION.sum()
    written = per_candidate - np.where(has_donor, NBYTES_STEM + NBYTES_POSITION.sum() * prefix_len, 0)
    ok = ~failed

    def col(values, type_, mask=None):
        return pa.array(values, type=type_, mask=mask)

    hosts = pa.array([f"x3000c0s{i // 4}b0n0" for i in range((workers + 3) // 4 * 4)])
    host = pa.DictionaryArray.from_arrays(pa.array((worker - 1) // 4, pa.int32()), hosts).cast(pa.string())
    offsets = pa.array(np.arange(0, n * L + 1, L, dtype=np.int32))
    cand = pa.table(
        {
            "run": pa.array(np.full(n, run, dtype=object), pa.string()),
            "job_id": col(np.arange(n), pa.int64()),
            "worker": col(worker, pa.int32()),
            "host": host,
            "pid": col(10000 + worker, pa.int32()),
            "submit_time": col(submit, pa.float64()),
            "start_time": col(start, pa.float64()),
            "end_time": col(end, pa.float64()),
            "stage": col(np.where(stage2, 2, 1).astype(np.int8), pa.int8()),
            "arch_seq": pa.ListArray.from_arrays(offsets, pa.array(arch.ravel().astype(np.int16))),
            "parent_id": col(parent, pa.int64(), parent < 0),
            "mutation_pos": col(mut_pos.astype(np.int16), pa.int16(), mut_pos < 0),
            "quality": col(quality, pa.float64(), failed),
            "status": pa.DictionaryArray.from_arrays(pa.array(failed.astype(np.int32)), pa.array(["ok", "failed"])).cast(pa.string()),
            "error": pa.DictionaryArray.from_arrays(pa.array(np.where(failed, 0, -1).astype(np.int32), mask=ok),
                                                    pa.array(["RuntimeError: CUDA error: an illegal memory access was encountered"])).cast(pa.string()),
            "warning": pa.nulls(n, pa.string()),
            "epochs": col(np.ones(n, np.int32), pa.int32()),
            "train_seconds": col(train, pa.float64()),
            "insert_seq": col(insert_seq, pa.int64(), insert_seq < 0),
            "population_version": col(version, pa.int64()),
            "donor_id": col(donor, pa.int64(), ~has_donor),
            "prefix_len": col(prefix_len.astype(np.int16), pa.int16()),
            "n_transferred_tensors": col(n_tensors.astype(np.int32), pa.int32()),
            "bytes_read": col(miss_bytes, pa.int64()),
            "bytes_written": col(np.where(ok, written, 0), pa.int64()),
            "stored": col(ok, pa.bool_()),
            "transfer_seconds": col(miss_bytes / 1e9 + 0.002 * has_donor, pa.float64()),
            "cache_hits": col(hits, pa.int32()),
        },
        schema=CANDIDATES,
    )
    tensor_id = pc.binary_join_element_wise(
        pc.cast(pa.array(owner_id), pa.string()), pc.cast(pa.array(position), pa.string()),
        pc.cast(pa.array(kind), pa.string()), ":")
    reads = pa.table(
        {
            "run": pa.array(np.full(len(job), run, dtype=object), pa.string()),
            "job_id": col(job, pa.int64()),
            "worker": col(read_worker, pa.int32()),
            "start_time": col(read_time, pa.float64()),
            "tensor_id": tensor_id,
            "owner_id": col(owner_id, pa.int64()),
            "position": col(position.astype(np.int16), pa.int16()),
            "nbytes": col(nbytes, pa.int64()),
            "cache_hit": col(seen, pa.bool_()),
        },
        schema=TENSOR_READS,
    )
    params = {
        "run": run, "population": p, "sample": s, "candidates": n, "workers": workers, "epochs": 1,
        "transfer": True, "seed": seed, "space": "nb201", "space_options": {"C": 8, "N": 1},
        "num_choices": [K] * L, "synthetic": True,
    }
    return cand, reads, params


def write(cand, reads, params, out_dir) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "candidates.parquet", out_dir / "tensor_reads.parquet"
    for table, schema, path in ((cand, CANDIDATES, paths[0]), (reads, TENSOR_READS, paths[1])):
        pq.write_table(table.cast(with_run_metadata(schema, params)), path, compression="zstd", row_group_size=256 * 1024)
    return paths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="candidates N")
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--sample", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default="synthetic")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cand, reads, params = generate(args.n, args.workers, args.population, args.sample, seed=args.seed, run=args.run)
    t1 = time.perf_counter()
    paths = write(cand, reads, params, args.out_dir)
    print(f"{args.n} candidates, {reads.num_rows} tensor reads: generated in {t1 - t0:.1f} s, "
          f"written in {time.perf_counter() - t1:.1f} s -> {paths[0]}, {paths[1]}")


if __name__ == "__main__":
    main()
