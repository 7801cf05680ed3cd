"""Time the RQ5 cache-policy replay (evotrace.analysis.rq5.replay_run) on 6 million tensor reads.

The reads come from `lineage_trace` below, drawn in seconds: 1,000,000 candidates on W workers, each
inheriting a uniform prefix of 0..12 of a 12-position sequence from a donor completed within the last few
hundred candidates, and reading the tensors that prefix owns along its lineage (so ~6 reads per candidate,
popular early tensors, per-position sizes). bench/synthetic_trace.py draws traces from the simulator
itself, at about 4 ms per candidate on this machine: `--traces DIR` replays such a trace instead.

Each policy replays every read once through per-worker caches at one capacity (10 % of the bytes each
worker reads), which includes sorting the reads and counting donations. Target on a 2-core machine:
6 million reads replay in <= 60 s per policy. The eviction loop is compiled by numba on first use (cached
in __pycache__ afterwards): that one-off compilation is timed apart. Wall and CPU seconds are printed: on a
shared machine the CPU seconds are the steadier figure. `--full` also times the whole cache_replay table (every
policy x capacity x scope), which costs about policies x capacities x 2 of these passes.

    python bench/bench_replay.py                # 1,000,000 candidates, ~6M reads
    python bench/bench_replay.py --n 100000 --full
    python bench/bench_replay.py --traces /tmp/synth   # bench/synthetic_trace.py --out-dir /tmp/synth
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from evotrace.analysis import rq5
from evotrace.analysis.replay import POLICIES, replay

TARGET_SECONDS = 60.0
ANALYSIS = {"popularity_threshold": 5, "tiers": {"tier1_fraction": 0.3, "tier3_max": 3},
            "cache_replay": {"capacities": [0.1], "node_workers": 4}}


POSITION_BYTES = np.array([432, 2304, 2304, 9216, 9216, 2304, 9216, 9216, 2304, 9216, 9216, 400], np.int64)


def lineage_trace(n: int, workers: int, population: int = 100, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(candidates, tensor_reads) of n candidates: candidate i runs on worker i % W from i // W to i // W + 1
    and, past the first p, inherits a prefix of uniform length 0..12 from a donor completed within the
    last ~p candidates; position j of a candidate is owned by the donor's owner when inherited, else by
    the candidate itself, and every inherited tensor is one read."""
    rng = np.random.default_rng(seed)
    length = len(POSITION_BYTES)
    prefix = rng.integers(0, length + 1, n)
    prefix[:population] = 0
    idx = np.arange(n)
    donor = np.maximum(idx - workers - rng.geometric(1.0 / population, n), 0)
    owner = np.tile(idx[:, None], (1, length))
    for i in range(population, n):
        k = prefix[i]
        owner[i, :k] = owner[donor[i], :k]
    start = (idx // workers).astype(float)
    candidates = pd.DataFrame({"run": "lineage", "job_id": idx, "submit_time": start, "start_time": start,
                               "end_time": start + 1.0, "worker": idx % workers + 1})
    rows = np.repeat(idx, prefix)
    position = np.arange(len(rows)) - np.repeat(np.cumsum(prefix) - prefix, prefix)
    tensor = pd.Series(owner[rows, position]).astype(str) + ":" + pd.Series(position).astype(str)
    reads = pd.DataFrame({"run": "lineage", "job_id": rows, "worker": rows % workers + 1, "start_time": start[rows],
                          "tensor_id": tensor, "nbytes": POSITION_BYTES[position]})
    return candidates, reads


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="candidates of the synthetic trace")
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--full", action="store_true", help="also time the whole cache_replay table")
    ap.add_argument("--traces", help="a trace folder (candidates.parquet, tensor_reads.parquet) to replay instead")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.traces:
        candidates = pd.read_parquet(Path(args.traces) / "candidates.parquet")
        tensor_reads = pd.read_parquet(Path(args.traces) / "tensor_reads.parquet")
        workers = candidates["worker"].nunique()
    else:
        candidates, tensor_reads = lineage_trace(args.n, args.workers)
        workers = args.workers
    p = 100
    params = {"run": str(candidates["run"].iloc[0]), "population": p}
    print(f"trace: {len(candidates):,} candidates, {len(tensor_reads):,} tensor reads on {workers} workers "
          f"(read or drawn in {time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    replay(np.array([0, 1, 0]), np.ones(3, np.int64), np.arange(3), 1)
    print(f"compiling (or loading) the eviction loop: {time.perf_counter() - t0:.1f} s")
    worst = 0.0
    for policy in POLICIES:
        t0, c0 = time.perf_counter(), time.process_time()
        row = rq5.replay_run(candidates, tensor_reads, p, ANALYSIS, policies=(policy,), scopes=("worker",)).iloc[0]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        worst = max(worst, seconds)
        print(f"  {policy:<10} {seconds:6.1f} s wall {cpu:6.1f} s CPU  {len(tensor_reads) / seconds / 1e6:5.2f} M reads/s  "
              f"hit ratio {row['hit_ratio']:.3f} at 10 %")
    verdict = "met" if worst <= TARGET_SECONDS * len(tensor_reads) / 6e6 else "NOT met"
    print(f"slowest policy: {worst:.1f} s for {len(tensor_reads) / 1e6:.1f} M reads "
          f"(target {TARGET_SECONDS:.0f} s per 6 M reads: {verdict})")
    if args.full:
        analysis = dict(ANALYSIS, cache_replay={"capacities": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0], "node_workers": 4})
        t0, c0 = time.perf_counter(), time.process_time()
        table = rq5.cache_replay(candidates, tensor_reads, {"analysis": analysis, "runs": {params["run"]: params}})
        print(f"whole cache_replay table ({len(table)} rows): {time.perf_counter() - t0:.1f} s wall, "
              f"{time.process_time() - c0:.1f} s CPU")
        with pd.option_context("display.width", 160):
            print(table[table["scope"] == "worker"].pivot(index="capacity_fraction", columns="policy", values="hit_ratio"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
