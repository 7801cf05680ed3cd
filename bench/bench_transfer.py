"""Time-to-quality with vs without transfer (figures, not a test), from the traces of a finished study:
by default the embedded study's nb201-short (transfer) and nb201-short-scratch (identical search, no
transfer). For each quality target, the wall time at which each search first reached it, and the ratio
scratch / transfer (selective weight transfer reported 1.4-1.5x). Also the mean training seconds per
candidate, which transfer lowers by freezing the prefix.

    make run   # or: snakemake --profile profiles/local results/default/traces/candidates.parquet
    python bench/bench_transfer.py [--traces results/default/traces/candidates.parquet]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def time_to_quality(trace: pd.DataFrame, target: float) -> float:
    ok = trace[trace["status"] == "ok"].sort_values("end_time")
    reached = ok[ok["quality"] >= target]
    return float(reached["end_time"].iloc[0]) if len(reached) else np.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", default="results/default/traces/candidates.parquet")
    ap.add_argument("--transfer", default="nb201-short")
    ap.add_argument("--scratch", default="nb201-short-scratch")
    a = ap.parse_args()
    trace = pd.read_parquet(a.traces)
    with_t, without = trace[trace["run"] == a.transfer], trace[trace["run"] == a.scratch]
    best = min(with_t["quality"].max(), without["quality"].max())
    print(f"runs: {a.transfer} (transfer) vs {a.scratch} (no transfer), {len(with_t)} and {len(without)} candidates")
    print(f"wall time: {with_t['end_time'].max():.1f} s vs {without['end_time'].max():.1f} s "
          f"(ratio {without['end_time'].max() / with_t['end_time'].max():.2f}x)")
    print(f"mean training seconds per candidate: {with_t['train_seconds'].mean():.3f} vs "
          f"{without['train_seconds'].mean():.3f} (ratio {without['train_seconds'].mean() / with_t['train_seconds'].mean():.2f}x)")
    for q in sorted({round(best - d, 4) for d in (0.05, 0.02, 0.01, 0.0)}):
        t1, t0 = time_to_quality(with_t, q), time_to_quality(without, q)
        print(f"time to quality >= {q:.4f}: transfer {t1:.1f} s, scratch {t0:.1f} s, ratio {t0 / t1:.2f}x")


if __name__ == "__main__":
    main()
