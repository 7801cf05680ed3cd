"""Time the RQ5 cache-policy replay (evotrace.analysis.rq5.replay_run) on the tensor reads of a synthetic
trace (bench/synthetic_trace.py: ~6 reads per candidate, so 1,000,000 candidates give ~6 million reads).

Each policy replays every read once through per-worker caches at one capacity (10 % of the bytes each
worker reads), which includes sorting the reads and counting donations. Target on a 2-core machine:
6 million reads replay in <= 60 s per policy. The eviction loop is compiled by numba on first use (cached
in __pycache__ afterwards): that one-off compilation is timed apart. Wall and CPU seconds are printed: on a
shared machine the CPU seconds are the steadier figure. `--full` also times the whole cache_replay table (every
policy x capacity x scope), which costs about policies x capacities x 2 of these passes.

    python bench/bench_replay.py                # 1,000,000 candidates, ~6M reads
    python bench/bench_replay.py --n 100000 --full
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_trace import generate  # noqa: E402

from evotrace.analysis import rq5  # noqa: E402
from evotrace.analysis.replay import POLICIES, replay  # noqa: E402

TARGET_SECONDS = 60.0
ANALYSIS = {"popularity_threshold": 5, "tiers": {"tier1_fraction": 0.3, "tier3_max": 3},
            "cache_replay": {"capacities": [0.1], "node_workers": 4}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="candidates of the synthetic trace")
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--full", action="store_true", help="also time the whole cache_replay table")
    args = ap.parse_args()

    t0 = time.perf_counter()
    cand, reads, params = generate(n=args.n, workers=args.workers)
    candidates, tensor_reads = cand.to_pandas(), reads.to_pandas()
    p = int(params["population"])
    print(f"trace: {args.n:,} candidates, {len(tensor_reads):,} tensor reads on {args.workers} workers "
          f"(generated in {time.perf_counter() - t0:.1f} s)")
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
